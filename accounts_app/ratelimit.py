"""A small fixed-window rate limit per client IP, kept in Django's cache.

Used on the public endpoints that take secrets in the URL (invitation and login links), where
guessing is the attack. Behind a reverse proxy REMOTE_ADDR is the proxy, so the limit is shared
by everybody behind it: the numbers are generous for that reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def hit(request: HttpRequest, *, scope: str) -> bool:
    """Count one request; True while the client is within its allowance."""
    window = settings.FASTFLOW_AUTH_RATE_LIMIT_WINDOW
    key = f"fastflow:ratelimit:{scope}:{request.META.get('REMOTE_ADDR', '')}"
    cache.add(key, 0, timeout=window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add() and incr()
        cache.set(key, 1, timeout=window)
        count = 1
    return count <= settings.FASTFLOW_AUTH_RATE_LIMIT_COUNT


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
