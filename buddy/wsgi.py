import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

application = get_wsgi_application()

from buddy.core.embedded import start_scheduler  # noqa: E402
from buddy.core.tasks import app  # noqa: E402

start_scheduler(app)
