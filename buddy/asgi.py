import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

application = get_asgi_application()

from buddy.embedded import start_scheduler  # noqa: E402

start_scheduler()
