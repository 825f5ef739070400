"""Work that follows a deployment's change, scheduled from inside the changing transaction.

Two kinds:
- guards that must hold the moment the transaction commits (the lookup cache's tombstones and
  generations) are the receivers of `deployments.signals`, sent *before* the commit, so that no
  cached answer can outlive it;
- everything else (default key, revocation of every key, provisioner calls) is a task sent by name
  only after the commit (`enqueue_on_commit`), so a rolled-back change schedules nothing.

A message to the broker can still be lost after the commit; the database records what is owed,
and the reconcilers (`keys.reconcile`, `deployments.reconcile`) finish it.
"""

from __future__ import annotations

from collections.abc import Sequence

from buddy.core.tasks import enqueue_on_commit
from deployments import signals
from deployments.models import SERVING_STATUSES, Deployment


def after_created(deployment_id: object) -> None:
    enqueue_on_commit("deployments.provision", str(deployment_id))


def after_status_change(deployment_id: object, *, previous: str, current: str) -> None:
    """A move between live statuses (an end is `after_ended`)."""
    after_changed(deployment_id)
    if current in SERVING_STATUSES:
        enqueue_on_commit("keys.create_default", str(deployment_id))


def after_ended(deployment_ids: Sequence[object], *, actor: str = "system") -> None:
    """Deployments ended for good: their keys revoked and the guards written now (before the
    commit, by the receivers in `keys`), so that from the commit on every lookup of their keys
    answers `revoked_api_key`; then one revocation (a safety net that finds nothing in the normal
    case) and one teardown message for all of them."""
    if not deployment_ids:
        return
    signals.deployments_ended.send(sender=Deployment, deployment_ids=deployment_ids, actor=actor)
    ids = [str(deployment_id) for deployment_id in deployment_ids]
    enqueue_on_commit("keys.revoke_for_deployments", ids)
    enqueue_on_commit("deployments.teardown_many", ids)


def after_changed(deployment_id: object) -> None:
    """A change that is not an end (ready, restart, endpoint, extension)."""
    signals.deployment_changed.send(sender=Deployment, deployment_id=deployment_id)


def reprovision(deployment_ids: Sequence[object]) -> None:
    """The reconciler found deployments whose boot a lost message may never have asked for."""
    for deployment_id in deployment_ids:
        enqueue_on_commit("deployments.provision", str(deployment_id))


def teardown_again(deployment_ids: Sequence[object]) -> None:
    """The reconciler found ended deployments whose teardown was never confirmed."""
    if deployment_ids:
        enqueue_on_commit("deployments.teardown_many", [str(d) for d in deployment_ids])
