from __future__ import annotations


def bearer_token(authorization: object) -> str | None:
    """The credential of a `Bearer` Authorization header, or None when there is none."""
    if not isinstance(authorization, str):
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential
