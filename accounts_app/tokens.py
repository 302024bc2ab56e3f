"""API token encoding: an HS256 JWT whose `jti` names its `ApiToken` row (table `sessions`).

The row stores only the SHA-256 of the JWT, so a database dump does not hand out working tokens;
verification needs both a valid signature and a matching, unexpired row.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import jwt
from django.conf import settings

ALGORITHM = "HS256"
AUDIENCE = "fastflow-api"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_encode(*, user_id: str, token_id: str, issued_at: datetime, expires_at: datetime) -> str:
    claims = {
        "sub": user_id,
        "jti": token_id,
        "iat": int(issued_at.timestamp()),
        "exp": int(expires_at.timestamp()),
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, settings.SECRET_KEY, algorithm=ALGORITHM)


def token_decode(token: str) -> dict[str, Any] | None:
    """The verified claims, or None for anything that is not a valid, unexpired token of ours."""
    try:
        claims = jwt.decode(
            token,
            settings.SECRET_KEY,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "jti", "exp", "iat"]},
        )
    except jwt.PyJWTError:
        return None
    return claims
