import os

from celery import Celery

from buddy.metrics import connect_celery_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

app = Celery("buddy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
connect_celery_signals()
