"""buddy's ASGI application: the gateway (`/v1/`, `gateway.asgi`) beside Django (everything else).

The gateway is its own small ASGI app so that the fleet's chat requests pay for none of the
browser's middleware and no per-request thread; Django serves the console, the internal API, the
admin and the built-in model server as before.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buddy.settings")

django_application = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # The embedded default (`make run` serves uvicorn on this module) serves the admin's static
    # files itself, as runserver would; production serves them from STATIC_ROOT.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_application = ASGIStaticFilesHandler(django_application)

# Outermost around Django: a body over its path's limit is refused as it arrives, before Django's
# handler reads it whole (buddy.http.body_limit). The gateway counts its own bodies as it reads
# them (`gateway.asgi`, BUDDY_GATEWAY_MAX_BODY_BYTES).
from buddy.http.body_limit import BodySizeLimit  # noqa: E402

django_application = BodySizeLimit(django_application)  # type: ignore[assignment]

from buddy.core.embedded import start_scheduler  # noqa: E402
from buddy.core.tasks import app  # noqa: E402
from gateway.asgi import application as gateway_application  # noqa: E402

GATEWAY_PREFIX = "/v1/"


async def application(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"].startswith(GATEWAY_PREFIX):
        await gateway_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)


start_scheduler(app)
