"""Log formatting for buddy: JSON (production) or text (development), each line with the request
id, and no secret on any line.

Secrets must never be logged, but a mistake (an exception message quoting a header, a debug line
with a key) must not leak one either. So redaction happens twice: `RedactSecretsFilter` rewrites
each record's message and arguments, and the formatters redact the finished line as well, which
also covers tracebacks and `extra` fields.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from buddy.http.request_id import current_request_id

REDACTED = "[REDACTED]"

# What may stand for `_` in a prefix: itself, or its escaped forms (URL, JSON/Python, markdown).
_UNDERSCORE = r"(?:_|%5[fF]|\\u005[fF]|\\x5[fF]|\\_)"
# Where a credential's scheme or name may start: not glued to a word, except behind an escaped
# newline/tab (`...\nToken abc` in the repr of an exception's text).
_START = r"(?:(?<=\\[nrt])|(?<![A-Za-z0-9_\-]))"
# Names whose value is a credential in `name=value`, `"name": "value"` or `'name': 'value'`
# (`*_token`, `*_secret`, `*password`, `api_key`, `authorization`...; `max_tokens` is not one).
_SECRET_NAME = r"[A-Za-z0-9_\-]*(?:token|secret|password|passwd|api_?key|authorization)"  # noqa: S105 - a pattern of names, not a secret

# Where each case-insensitive pattern below starts: the hints of `_HINTS` are keyed by them.
_SCHEME = _START + r"(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=%\\\-]+"
_TOKEN_SCHEME = _START + r"(Token)(\s+)[A-Za-z0-9._~+/=%\\\-]{8,}"
_QUOTED_FIELD = r"""((?:\\*["'])""" + _SECRET_NAME + r"""\\*["']\s*:\s*)(\\*["'])(?:(?!\2).)*?\2"""
_ASSIGNED_FIELD = _START + "(" + _SECRET_NAME + r")(\s*=\s*)(?![\s&,;])[^\s&,;\"'<>)\]}]+"

# (pattern, replacement): any credential after an auth scheme (a knox console token, a key or a
# service token in a header; after "token", 8+ characters, so prose like "token expired" stays),
# secret-named fields of query strings, JSON and reprs, then API keys, service tokens and console
# tokens wherever they appear, their `_` written plainly or escaped.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_SCHEME, re.IGNORECASE), rf"\1\2{REDACTED}"),
    (re.compile(_TOKEN_SCHEME, re.IGNORECASE), rf"\1\2{REDACTED}"),
    # "token": "...", 'secret': '...', \"password\": \"...\" (JSON inside a JSON string).
    (re.compile(_QUOTED_FIELD, re.IGNORECASE), rf"\1\2{REDACTED}\2"),
    # token=..., ?api_key=...&, password=... up to the next separator.
    (re.compile(_ASSIGNED_FIELD, re.IGNORECASE), rf"\1\2{REDACTED}"),
    # `_` included: two keys run together must not leave the second one's body behind.
    (re.compile(rf"ob{_UNDERSCORE}sk{_UNDERSCORE}[0-9A-Za-z_]{{10,}}"), f"ob_sk_{REDACTED}"),
    (re.compile(rf"ob{_UNDERSCORE}svc{_UNDERSCORE}[0-9A-Za-z_\-]{{10,}}"), f"ob_svc_{REDACTED}"),
    (re.compile(rf"ob{_UNDERSCORE}con{_UNDERSCORE}[0-9A-Za-z_\-]{{10,}}"), f"ob_con_{REDACTED}"),
    # Webhook signing secrets (`whsec_` + base64).
    (re.compile(rf"whsec{_UNDERSCORE}[0-9A-Za-z+/=]{{10,}}"), f"whsec_{REDACTED}"),
)


# Words without which a case-insensitive pattern cannot match, by the pattern's text: a text in
# which none of them occurs skips that pattern's scan (these scans cost ~10x the others; every
# log line pays them). A pattern changed or added without an entry here is always scanned (and
# `tests/test_redact_hints.py` fails).
_SECRET_WORDS = ("token", "secret", "passw", "apikey", "api_key", "authorization")
_HINTS: dict[str, tuple[str, ...]] = {
    _SCHEME: ("bearer", "basic"),
    _TOKEN_SCHEME: ("token",),
    _QUOTED_FIELD: _SECRET_WORDS,
    _ASSIGNED_FIELD: _SECRET_WORDS,
}


def _hint_text(text: str) -> str:
    """`text` folded so that every text a case-insensitive `re` pattern matches contains the
    pattern's letters in lower case: casefold, and the two letters `re.IGNORECASE` equates with
    "i" that casefold does not fold to it (dotless i, and dotted capital I's combining dot)."""
    return text.casefold().replace("\u0131", "i").replace("\u0307", "")


def redact(text: str) -> str:
    """`text` with every secret-looking substring replaced."""
    folded: str | None = None
    for pattern, replacement in _PATTERNS:
        hints = _HINTS.get(pattern.pattern)
        if hints is not None:
            if folded is None:
                folded = _hint_text(text)
            if not any(hint in folded for hint in hints):
                continue
        redacted = pattern.sub(replacement, text)
        if redacted != text:
            text, folded = redacted, None
    return text


# A text in which none of these characters occurs matches no pattern of `_PATTERNS`: the auth
# schemes need white space after them, the quoted fields a quote, the assigned fields `=`, and the
# prefixed credentials `_` (or its escapes, which start with `%` or a backslash).
_MAY_CARRY_SECRET = re.compile(r"[\s\"'=_%\\]").search
# Texts of access lines seen to redact to themselves ("POST /v1/chat/completions 200"), bounded:
# such a text is logged as it is anyway.
_CLEAN_TEXTS: set[str] = set()


def _redact_field(text: str) -> str:
    """`redact(text)`, for the short fields of an access line that carry client input."""
    if _MAY_CARRY_SECRET(text) is None or text in _CLEAN_TEXTS:
        return text
    redacted = redact(text)
    if redacted == text and len(_CLEAN_TEXTS) < 4096:
        _CLEAN_TEXTS.add(text)
    return redacted


_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO"}


def _request_id_of(record: logging.LogRecord) -> str:
    request_id = current_request_id()
    if request_id == "-":
        # Django logs a request's 4xx/5xx (`django.request`) after the middleware has returned,
        # passing the request itself: its id is on it.
        request_id = getattr(getattr(record, "request", None), "request_id", "-")
    return request_id


class RequestIdFilter(logging.Filter):
    """Puts the current request id on the record (`-` outside a request)."""

    # `log_access` writes access lines itself to handlers with only buddy's own filters: the
    # formatters' `access_line` puts the request id on, and redacts, what these filters would.
    covers_access_line = True

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id_of(record)
        return True


class RedactSecretsFilter(logging.Filter):
    """Redacts secrets from the record's message and arguments before any handler formats it."""

    covers_access_line = True  # see RequestIdFilter

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: keep what can be kept, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        # The traceback too, for every handler (not only ours, which redact the finished line):
        # rendered once here, redacted, and kept as the record's `exc_text`, which formatters
        # use instead of formatting `exc_info` again.
        if record.exc_info:
            record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_TRACEBACK_FORMATTER = logging.Formatter()


class _RedactedFormatter(logging.Formatter):
    """What both formats share: the record's request id, and the finished line redacted."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id_of(record)
        return redact(super().format(record))


class JsonFormatter(_RedactedFormatter, _BaseJsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id and any `extra`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The access line is rendered directly (`access_line`) only with these default settings.
        self._renders_access_lines = not args and not kwargs
        kwargs.setdefault("fmt", "{levelname}{name}{message}{request_id}")
        kwargs.setdefault("style", "{")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")  # ISO 8601, UTC
        # Django passes the request object along with its records: not a field of a log line
        # (its repr carries the query string), the request id and path already say which.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__(*args, **kwargs)

    def access_line(
        self,
        level: int,
        request_id: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        created: float,
    ) -> str | None:
        """The access line `format` would write for `buddy.http.request_id.log_access`'s record,
        built directly: the same keys in the same order, the client's fields redacted (None: not
        with this formatter's settings)."""
        if not self._renders_access_lines or level not in _LEVEL_NAMES:
            return None
        message = _redact_field(f"{method} {path} {status}")
        return (
            f'{{"level": "{_LEVEL_NAMES[level]}", "logger": "buddy.access", '
            f'"message": {encode_basestring_ascii(message)}, '
            f'"request_id": {encode_basestring_ascii(_redact_field(request_id))}, '
            f'"method": {encode_basestring_ascii(_redact_field(method))}, '
            f'"path": {encode_basestring_ascii(_redact_field(path))}, '
            f'"status": {status!r}, "duration_ms": {duration_ms!r}, '
            f'"time": "{datetime.fromtimestamp(created, tz=UTC).isoformat()}"}}'
        )


class TextFormatter(_RedactedFormatter):
    """Human-readable lines for development, redacted like the JSON ones."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        self._renders_access_lines = fmt is None and not args and not kwargs
        fmt = fmt or "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
        super().__init__(fmt, *args, **kwargs)
        self._second = -1
        self._second_text = ""

    def access_line(
        self,
        level: int,
        request_id: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        created: float,
    ) -> str | None:
        """The access line `format` would write (see `JsonFormatter.access_line`)."""
        if (
            not self._renders_access_lines
            or level not in _LEVEL_NAMES
            or self.converter is not time.localtime
        ):
            return None
        second = int(created)
        if second != self._second:  # the local time's text, once a second
            self._second_text = time.strftime(self.default_time_format, time.localtime(second))
            self._second = second
        msecs = int((created - second) * 1000)
        message = _redact_field(f"{method} {path} {status}")
        return (
            f"{self._second_text},{msecs:03d} {_LEVEL_NAMES[level]} buddy.access "
            f"[{_redact_field(request_id)}] {message}"
        )
