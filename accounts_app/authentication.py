"""DRF authentication for `Authorization: Bearer <token>` API tokens (see accounts_app.tokens)."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from accounts_app.services import token_authenticate

KEYWORD = b"bearer"
# Same message for every failure: which check failed is none of the caller's business.
REFUSAL = "Invalid, expired or revoked token."


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <token>'.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed(REFUSAL) from exc
        api_token = token_authenticate(token=token)
        if api_token is None:
            raise AuthenticationFailed(REFUSAL)
        return api_token.user, api_token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="api"'
