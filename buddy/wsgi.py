import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

django_application = get_wsgi_application()

from buddy.core.embedded import start_scheduler  # noqa: E402
from buddy.core.tasks import app  # noqa: E402
from keys.lookup.middleware import ProxyLookupFront  # noqa: E402

# The proxy's ordinary lookups are answered in front of Django's handler (ProxyLookupFront).
application = ProxyLookupFront(django_application)

start_scheduler(app)
