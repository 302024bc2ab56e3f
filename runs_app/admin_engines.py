"""The engine admin: the engines that heartbeat into `engine_instances`, read-only."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from runs_app.models import EngineInstance


class EngineInstanceAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "hostname",
        "pid",
        "executor",
        "started_at",
        "heartbeat_at",
        "heartbeat_age",
    )
    list_filter = ("executor", "hostname")
    search_fields = ("id", "hostname")
    readonly_fields = ("id", "hostname", "pid", "executor", "started_at", "heartbeat_at")
    ordering = ("-heartbeat_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: EngineInstance | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: EngineInstance | None = None
    ) -> bool:
        return False

    @admin.display(description="heartbeat age", ordering="-heartbeat_at")
    def heartbeat_age(self, obj: EngineInstance) -> str:
        age = (timezone.now() - obj.heartbeat_at).total_seconds()
        stale = age > settings.FASTFLOW_HEARTBEAT_STALE_SECONDS
        return format_html(
            '<span class="{}">{}s{}</span>',
            "ff-stale" if stale else "ff-alive",
            int(age),
            " (stale)" if stale else "",
        )
