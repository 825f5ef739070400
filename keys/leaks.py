"""Leak reports of secret scanners (GitHub's secret-scanning partner program): the report's
signature, and what a report of our keys does.

GitHub POSTs a JSON array of `{"token", "type", "url", "source"}`, signed with ECDSA P-256 /
SHA-256 over the raw body (`Github-Public-Key-Signature`, base64 DER) by the key named in
`Github-Public-Key-Identifier`. Its public keys are published at `BUDDY_SECRET_SCANNING_KEYS_URL`
and cached here per process: for `_KEYS_TTL_SECONDS`, and fetched again at once when a report
names a key the cache does not hold (GitHub rotated its keys), at most once per
`_REFETCH_MIN_SECONDS`, so that reports naming made-up identifiers cannot make us hammer the URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.conf import settings

from buddy.core.errors import ValidationFailed
from keys import hashing, services, tokens
from keys.models import ApiKey

logger = logging.getLogger(__name__)

_KEYS_TTL_SECONDS = 3600.0
_REFETCH_MIN_SECONDS = 60.0
_FETCH_TIMEOUT_SECONDS = 10.0
ACTOR = "system:secret-scanning"


@dataclass
class _PublicKeys:
    keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


_caches: dict[str, _PublicKeys] = {}
_caches_guard = threading.Lock()


def _fetch(url: str) -> dict[str, ec.EllipticCurvePublicKey]:
    response = httpx.get(url, timeout=_FETCH_TIMEOUT_SECONDS, follow_redirects=False)
    response.raise_for_status()
    found: dict[str, ec.EllipticCurvePublicKey] = {}
    for item in response.json().get("public_keys", []):
        try:
            key = load_pem_public_key(str(item["key"]).encode())
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            found[str(item["key_identifier"])] = key
    return found


def _public_key(identifier: str) -> ec.EllipticCurvePublicKey | None:
    url = settings.BUDDY_SECRET_SCANNING_KEYS_URL
    with _caches_guard:
        cache = _caches.setdefault(url, _PublicKeys())
    with cache.lock:
        age = time.monotonic() - cache.fetched_at
        stale = age >= _KEYS_TTL_SECONDS
        unknown = identifier not in cache.keys and age >= _REFETCH_MIN_SECONDS
        if stale or unknown:
            cache.fetched_at = time.monotonic()  # a failed fetch waits its turn too
            try:
                cache.keys = _fetch(url)
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                logger.warning(
                    "could not fetch the secret-scanning public keys (%s); keeping %d cached",
                    type(exc).__name__,
                    len(cache.keys),
                )
        return cache.keys.get(identifier)


def leak_report_signature_valid(*, body: bytes, key_identifier: str, signature: str) -> bool:
    """Whether `signature` (base64 DER ECDSA) is the named public key's over `body`."""
    if not key_identifier or not signature or len(key_identifier) > 200:
        return False
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    public_key = _public_key(key_identifier)
    if public_key is None:
        return False
    try:
        public_key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _real_key(token: str) -> ApiKey | None:
    """The key `token` is, verified like a lookup (form and checksum first, then the hash)."""
    try:
        parsed = tokens.parse(token)
    except tokens.MalformedKey:
        return None
    key = ApiKey.objects.filter(public_id=parsed.public_id).first()
    if key is None or not hashing.verify_key(key.secret_hash, parsed.plaintext):
        return None
    return key


_MAX_LENGTHS = {"token": 1000, "type": 200, "url": 2000, "source": 200}


def leak_reports_validate(body: object) -> list[dict[str, str]]:
    """The reports of a leak report's body (a JSON array of `{"token", "type", "url",
    "source"}`; `url` and `source` optional), or ValidationFailed."""
    if not isinstance(body, list) or len(body) > 1000:
        raise ValidationFailed(fields={"reports": ["A JSON array of at most 1000 reports."]})
    reports = []
    for index, item in enumerate(body):
        if not isinstance(item, dict):
            raise ValidationFailed(fields={f"{index}": ["A report is a JSON object."]})
        report: dict[str, str] = {}
        for name, max_length in _MAX_LENGTHS.items():
            value = item.get(name, "")
            required = name in {"token", "type"}
            if not isinstance(value, str) or len(value) > max_length or (required and not value):
                raise ValidationFailed(
                    fields={f"{index}.{name}": [f"A string of at most {max_length} characters."]}
                )
            report[name] = value
        reports.append(report)
    return reports


def leak_report_handle(*, reports: list[dict[str, str]]) -> list[dict[str, str]]:
    """Revoke every reported token that is an active key of ours; label each report
    (`true_positive`: a real key of ours, active or not) by the SHA-256 of its token."""
    answer = []
    for report in reports:
        token, url = report["token"], report.get("url") or ""
        key = _real_key(token)
        if key is not None and services.key_revoke_leaked(key_id=key.pk, url=url, actor=ACTOR):
            logger.warning("key %s reported leaked and revoked", key.public_id)
        answer.append(
            {
                "token_hash": hashlib.sha256(token.encode()).hexdigest(),
                "token_type": report["type"],
                "label": "true_positive" if key is not None else "false_positive",
            }
        )
    return answer
