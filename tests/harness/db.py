"""The test database, for a process that is not this one (a live server, a Celery worker)."""

from __future__ import annotations

from urllib.parse import quote

from django.db import connection


def database_url_of_tests() -> str:
    """DATABASE_URL of pytest-django's test database (valid once `django_db_setup` ran)."""
    db = connection.settings_dict
    auth = quote(db.get("USER") or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{db['NAME']}"
