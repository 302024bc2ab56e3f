"""The pipeline admin. Rows come from the pipelines directory, so nothing is added or deleted
here: operators sync, switch pipelines on and off, and read their state and statistics.

What runs add to this page (Run now, the Last run column) is `runs_app`'s: runs_app/admin.py
registers this admin extended by `runs_app.admin_views.PipelineRunsAdminMixin`, so the import
arrow points from runs to pipelines, never back.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import (
    Case,
    F,
    FloatField,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from accounts_app.roles import role_can
from audit_app.context import AuditContext
from pipelines_app.admin_display import metadata_html, problems_box, schedules_html, state_badge
from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline, PipelineState
from pipelines_app.services import pipeline_set_enabled, pipelines_sync

MAX_NAMES_IN_MESSAGE = 10


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return PipelineState.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in PipelineState.values:
            return queryset.in_state(self.value())
        return queryset


def _names(pipelines: list[str]) -> str:
    shown = ", ".join(pipelines[:MAX_NAMES_IN_MESSAGE])
    extra = len(pipelines) - MAX_NAMES_IN_MESSAGE
    return shown + (f" and {extra} more" if extra > 0 else "")


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    change_list_template = "admin/pipelines_app/pipeline/sync_change_list.html"
    list_display = (
        "pipeline_name",
        "state_column",
        "error_column",
        "description_column",
        "tags_column",
        "enabled",
        "success_rate_column",
        "total_runs",
        "requirements_column",
    )
    list_display_links = ("pipeline_name",)
    list_filter = (StateFilter, "enabled", "is_missing", "has_requirements")
    search_fields = ("pipeline_name", "metadata__description", "metadata__tags")
    actions = ("enable_pipelines", "disable_pipelines")
    readonly_fields = (
        "pipeline_name",
        "state_column",
        "problems",
        "description_column",
        "tags_column",
        "folder_column",
        "schedules",
        "total_runs",
        "successful_runs",
        "failed_runs",
        "webhook_runs",
        "success_rate_column",
        "has_requirements",
        "requirements_hash",
        "last_cache_warmup",
        "cache_warmup_error",
        "discovered_at",
        "git_commit",
        "is_missing",
        "metadata_column",
    )
    base_fieldsets = (
        (
            None,
            {
                "fields": (
                    "pipeline_name",
                    "state_column",
                    "enabled",
                    "description_column",
                    "tags_column",
                    "folder_column",
                )
            },
        ),
        ("Schedules", {"fields": ("schedules",)}),
        (
            "Statistics",
            {
                "fields": (
                    "success_rate_column",
                    "total_runs",
                    "successful_runs",
                    "failed_runs",
                    "webhook_runs",
                )
            },
        ),
        (
            "Dependencies",
            {
                "fields": (
                    "has_requirements",
                    "requirements_hash",
                    "last_cache_warmup",
                    "cache_warmup_error",
                )
            },
        ),
        (
            "Discovery",
            {"fields": ("discovered_at", "git_commit", "is_missing", "metadata_column")},
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # One query for the whole list: the latest run comes from a correlated subquery and
        # the rate from the counters.
        rate = Cast(F("successful_runs"), FloatField()) * 100.0 / F("total_runs")
        return (
            super()
            .get_queryset(request)
            .with_last_run()
            .annotate(
                success_rate=Case(
                    When(total_runs=0, then=Value(None)), default=rate, output_field=FloatField()
                ),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Pipeline | None = None) -> list:
        fieldsets = list(self.base_fieldsets)
        if obj is not None and (obj.discovery_error or obj.discovery_warnings or obj.is_missing):
            fieldsets.insert(0, ("Problems", {"fields": ("problems",)}))
        return fieldsets

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Pipeline | None = None) -> bool:
        return False

    def has_sync_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "sync")

    def has_toggle_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "toggle_pipeline")

    def save_model(
        self, request: HttpRequest, obj: Pipeline, form: ModelForm, change: bool
    ) -> None:
        # Never obj.save(): it would write back counters that runs update concurrently.
        if "enabled" in form.changed_data:
            pipeline_set_enabled(
                pipeline=obj,
                enabled=obj.enabled,
                audit=AuditContext.from_request(request, interface="admin"),
            )

    # --- URLs and views -------------------------------------------------------------------------
    def get_urls(self) -> list:
        info = (self.opts.app_label, self.opts.model_name)
        return [
            path(
                "sync/",
                self.admin_site.admin_view(self.sync_view),
                name="{}_{}_sync".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        context = {
            "has_sync_permission": self.has_sync_permission(request),
            # The secrets admin's "Encrypt a value" page, for pipeline.json's encrypted_env.
            "has_encrypt_permission": role_can(request.user.role, "encrypt_value"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def sync_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        try:
            report = pipelines_sync()
        except PipelinesDirError as exc:
            self.message_user(request, f"Sync failed: {exc}", messages.ERROR)
            return redirect(self._changelist_url())
        self.message_user(request, f"Pipelines synced: {report.summary()}.", messages.SUCCESS)
        if report.errors:
            self.message_user(
                request,
                f"Pipelines with configuration errors: {_names(sorted(report.errors))}.",
                messages.WARNING,
            )
        return redirect(self._changelist_url())

    def _changelist_url(self) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    # --- Actions --------------------------------------------------------------------------------
    @admin.action(description="Enable selected pipelines", permissions=["toggle"])
    def enable_pipelines(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected pipelines", permissions=["toggle"])
    def disable_pipelines(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> None:
        changed = [p for p in queryset if p.enabled != enabled]
        for pipeline in changed:
            pipeline_set_enabled(
                pipeline=pipeline,
                enabled=enabled,
                audit=AuditContext.from_request(request, interface="admin"),
            )
            self.log_change(request, pipeline, "Enabled" if enabled else "Disabled")
        verb = "enabled" if enabled else "disabled"
        self.message_user(request, f"{len(changed)} pipeline(s) {verb}.", messages.SUCCESS)
        not_runnable = [p.pk for p in changed if enabled and not p.is_runnable]
        if not_runnable:
            self.message_user(
                request,
                f"Enabled but still not runnable (missing or broken): {_names(not_runnable)}.",
                messages.WARNING,
            )

    # --- Columns --------------------------------------------------------------------------------
    @admin.display(description="State", ordering="is_missing")
    def state_column(self, obj: Pipeline) -> SafeString:
        return state_badge(obj)

    @admin.display(description="Description")
    def description_column(self, obj: Pipeline) -> str:
        return Truncator(obj.description).chars(80) or "—"

    @admin.display(description="Tags")
    def tags_column(self, obj: Pipeline) -> str:
        return ", ".join(obj.tags) or "—"

    @admin.display(description="Success rate", ordering="success_rate")
    def success_rate_column(self, obj: Pipeline) -> str:
        rate = getattr(obj, "success_rate", None)
        return "—" if rate is None else f"{rate:.0f} %"

    @admin.display(description="Discovery error")
    def error_column(self, obj: Pipeline) -> SafeString | str:
        if not obj.discovery_error:
            return ""
        short = Truncator(obj.discovery_error).chars(90)
        return format_html(
            '<span style="color:#dc3545;font-weight:600;display:inline-block;max-width:22em;" '
            'title="{}">{}</span>',
            obj.discovery_error,
            short,
        )

    @admin.display(description="Requirements", boolean=True, ordering="has_requirements")
    def requirements_column(self, obj: Pipeline) -> bool:
        return obj.has_requirements

    @admin.display(description="Folder")
    def folder_column(self, obj: Pipeline) -> str:
        try:
            return str(obj.folder)
        except ValueError as exc:
            return str(exc)

    @admin.display(description="Details")
    def problems(self, obj: Pipeline) -> SafeString | str:
        return problems_box(obj)

    @admin.display(description="Schedules")
    def schedules(self, obj: Pipeline) -> SafeString | str:
        return schedules_html(obj)

    @admin.display(description="pipeline.json (normalised)")
    def metadata_column(self, obj: Pipeline) -> SafeString:
        return metadata_html(obj)
