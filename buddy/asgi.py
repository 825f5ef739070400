import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

application = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # The embedded default (`make run` serves uvicorn on this module) serves the admin's static
    # files itself, as runserver would; production serves them from STATIC_ROOT.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

# Outermost: a body over its path's limit is refused as it arrives, before Django's handler
# reads it whole (buddy.http.body_limit).
from buddy.http.body_limit import BodySizeLimit  # noqa: E402

application = BodySizeLimit(application)  # type: ignore[assignment]  # any ASGI app

from buddy.core.embedded import start_scheduler  # noqa: E402
from buddy.core.tasks import app  # noqa: E402

start_scheduler(app)
