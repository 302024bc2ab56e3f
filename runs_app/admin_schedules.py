"""The schedule admin: admin-created rows are editable, pipeline.json rows are shown read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from audit_app.context import AuditContext
from runs_app.errors import ScheduleReadOnly
from runs_app.forms import ScheduledJobForm
from runs_app.models import ScheduledJob, ScheduleSource
from runs_app.schedule_services import (
    EDITABLE_FIELDS,
    scheduledjob_create,
    scheduledjob_delete,
    scheduledjob_next_fire_times,
    scheduledjob_update,
)

NEXT_FIRE_COUNT = 5


class ScheduledJobAdmin(admin.ModelAdmin):
    form = ScheduledJobForm
    list_display = (
        "pipeline",
        "trigger_type",
        "trigger_value",
        "enabled",
        "source",
        "run_config_id",
        "next_fire",
        "created_at",
    )
    list_filter = ("enabled", "trigger_type", "source", "pipeline")
    search_fields = ("pipeline__pipeline_name", "trigger_value", "run_config_id")
    list_select_related = ("pipeline",)
    autocomplete_fields = ("pipeline",)
    actions = ("enable_selected", "disable_selected")
    readonly_fields = ("id", "source_note", "next_fire_times", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("source_note", "pipeline", "run_config_id", "enabled")}),
        ("Trigger (UTC)", {"fields": ("trigger_type", "trigger_value", "start_date", "end_date")}),
        ("Upcoming", {"fields": ("next_fire_times",)}),
        ("Record", {"classes": ("collapse",), "fields": ("id", "created_at", "updated_at")}),
    )

    # Rows from pipeline.json are rewritten by every discovery sync: edits would not stick.
    def has_change_permission(self, request: HttpRequest, obj: ScheduledJob | None = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.source == ScheduleSource.ADMIN)

    def has_delete_permission(self, request: HttpRequest, obj: ScheduledJob | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.source == ScheduleSource.ADMIN)

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet, *, enabled: bool) -> None:
        changed, kept = 0, []
        for job in queryset:
            try:
                scheduledjob_update(
                    job=job,
                    enabled=enabled,
                    audit=AuditContext.from_request(request, interface="admin"),
                )
            except ScheduleReadOnly:
                kept.append(str(job))
            else:
                changed += 1
        verb = "enabled" if enabled else "disabled"
        if changed:
            self.message_user(request, f"{changed} schedule(s) {verb}.", messages.SUCCESS)
        if kept:
            self.message_user(
                request,
                f"Not {verb} (defined in pipeline.json; edit the file): {'; '.join(kept)}",
                messages.WARNING,
            )

    @admin.display(description="next fire (UTC)")
    def next_fire(self, obj: ScheduledJob) -> str:
        if not obj.enabled:
            return "disabled"
        upcoming = scheduledjob_next_fire_times(job=obj, count=1)
        return upcoming[0].strftime("%Y-%m-%d %H:%M:%S") if upcoming else "—"

    @admin.display(description=f"next {NEXT_FIRE_COUNT} fire times (UTC)")
    def next_fire_times(self, obj: ScheduledJob) -> str:
        if obj.pk is None:
            return "Shown after saving."
        upcoming = scheduledjob_next_fire_times(job=obj, count=NEXT_FIRE_COUNT)
        if not upcoming:
            return "None: the schedule's window is over or its trigger is invalid."
        note = "" if obj.enabled else " (the schedule is disabled: these will not fire)"
        items = format_html_join(
            "", "<li>{}</li>", ((t.strftime("%Y-%m-%d %H:%M:%S %Z"),) for t in upcoming)
        )
        return format_html('<ul class="ff-fire-times">{}</ul>{}', items, note)

    @admin.display(description="origin")
    def source_note(self, obj: ScheduledJob) -> str:
        if obj.is_file_defined:
            what = (
                "The restart_interval of a daemon pipeline (a tick stops the running run and "
                "starts a new one), defined"
                if obj.source == ScheduleSource.DAEMON_RESTART
                else "Defined"
            )
            return format_html(
                "{} in <code>{}/pipeline.json</code>; edit the file to change it "
                "(the next pipeline sync applies it).",
                what,
                obj.pipeline_id,
            )
        return "Created in the admin."

    def save_model(
        self, request: HttpRequest, obj: ScheduledJob, form: ScheduledJobForm, change: bool
    ) -> None:
        fields: dict[str, Any] = {f: form.cleaned_data[f] for f in EDITABLE_FIELDS}
        if change:
            scheduledjob_update(
                job=obj, audit=AuditContext.from_request(request, interface="admin"), **fields
            )
            return
        created = scheduledjob_create(
            audit=AuditContext.from_request(request, interface="admin"), **fields
        )
        # The admin goes on with `obj` (log entry, redirect): give it the created row.
        obj.pk = created.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: ScheduledJob) -> None:
        scheduledjob_delete(job=obj, audit=AuditContext.from_request(request, interface="admin"))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        skipped = 0
        for job in queryset:
            if job.source != ScheduleSource.ADMIN:
                skipped += 1
                continue
            scheduledjob_delete(
                job=job, audit=AuditContext.from_request(request, interface="admin")
            )
        if skipped:
            self.message_user(
                request,
                f"{skipped} schedule(s) defined in pipeline.json were kept; edit the files.",
                messages.WARNING,
            )
