"""The Celery app, where `celery -A buddy worker|beat` finds it (it is made in `buddy.core.tasks`,
beside the task base class, so that importing the kernel never needs this wiring module)."""

from buddy.core.tasks import app

__all__ = ["app"]
