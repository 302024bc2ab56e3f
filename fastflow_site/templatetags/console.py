"""Template helpers of the console: `{{ moment|reltime }}`, `{{ seconds|duration }}`,
`{% nav_link url label %}` (marked current when the page is under it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from fastflow_site.console import clock_tag, format_bytes, format_duration, time_tag

register = template.Library()


@register.filter
def reltime(moment: datetime | None) -> SafeString | str:
    return time_tag(moment)


@register.filter
def clock(moment: datetime | None) -> SafeString | str:
    return clock_tag(moment)


@register.filter
def duration(seconds: float | timedelta | None) -> str:
    return format_duration(seconds)


@register.simple_tag(takes_context=True)
def nav_link(
    context: template.Context, url: str, label: str, exact: bool = False, perm: str = ""
) -> SafeString | str:
    """A header link, shown only to users holding `perm` (when given)."""
    request = context.get("request")
    user = context.get("user")
    if perm and (user is None or not user.has_perm(perm)):
        return ""
    path = request.path if request is not None else ""
    current = path == url if exact else path.startswith(url)
    if current:
        return format_html('<li><a href="{}" aria-current="page">{}</a></li>', url, label)
    return format_html('<li><a href="{}">{}</a></li>', url, label)


@register.filter
def filesize_binary(value: float | None) -> str:
    return format_bytes(value)
