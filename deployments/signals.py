"""What a deployment's change tells the apps built on deployments, which this app never imports.

`deployments_ended` and `deployment_changed` are sent inside the transaction of the change, before
it commits, so that what a receiver does holds from the commit on (the revocation of an ended
deployment's keys, in `keys.receivers`; the lookup cache's tombstones and generations, in
`keys.lookup.guards`). A receiver's error rolls the change back. Work that must wait for the
commit is sent as a task by name instead (`buddy.core.tasks.enqueue_on_commit`).
"""

from django.dispatch import Signal

# Deployments that have just ended for good (stopped, failed, terminated); kwargs: deployment_ids,
# actor (who ended them).
deployments_ended = Signal()

# A deployment changed in a way that is not an end (ready, restarting, a new endpoint, a longer
# pack): answers cached about it are stale; kwargs: deployment_id.
deployment_changed = Signal()

# Sent after an end has committed by a caller that wants its keys revoked before it returns (an
# operator in the admin sees the result on the next page, worker or not); kwargs: deployment_ids,
# actor.
deployments_end_finish_requested = Signal()
