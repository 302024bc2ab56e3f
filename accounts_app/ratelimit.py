"""A small fixed-window rate limit per client IP, counted in the database (shared by every web
process; see `fastflow_site.throttle`).

Used on the public endpoints that take secrets in the URL (invitation and login links), where
guessing is the attack. Behind a reverse proxy REMOTE_ADDR is the proxy, so the limit is shared
by everybody behind it: the numbers are generous for that reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from fastflow_site.throttle import rate_limit_hit


def hit(request: HttpRequest, *, scope: str) -> bool:
    """Count one request; True while the client is within its allowance."""
    return rate_limit_hit(
        scope=f"auth:{scope}",
        key=request.META.get("REMOTE_ADDR", ""),
        limit=settings.FASTFLOW_AUTH_RATE_LIMIT_COUNT,
        window_seconds=settings.FASTFLOW_AUTH_RATE_LIMIT_WINDOW,
    ).allowed


def rate_limited(scope: str) -> Callable:
    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not hit(request, scope=scope):
                response = render(request, "accounts_app/rate_limited.html", status=429)
                response["Retry-After"] = str(settings.FASTFLOW_AUTH_RATE_LIMIT_WINDOW)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
