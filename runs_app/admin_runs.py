"""The run admin: a read-only record of every run, its live log, and Cancel / Retry."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from accounts_app.roles import role_can
from audit_app.context import AuditContext
from fastflow_site.api.errors import service_error_json
from runs_app.admin_display import (
    format_bytes,
    format_seconds,
    limits_summary,
    log_lines_json,
    log_tail,
    resource_summary,
    sparkline,
    status_badge,
)
from runs_app.admin_run_list import CappedPaginator, RunChangeList, run_search
from runs_app.errors import InvalidRunRequest, RunError
from runs_app.logs import (
    artifact_response,
    log_missing,
    log_offset_parse,
    log_path,
    log_read,
    metrics_missing,
    metrics_read,
    run_artifact,
    run_artifacts,
)
from runs_app.models import PipelineRun, RunStatus, TriggeredBy
from runs_app.services import run_cancel, run_delete, run_retry

MAX_REPORTED_ERRORS = 10


def _admin_link(viewname: str, pk: object, label: str) -> str:
    try:
        url = reverse(viewname, args=[quote(pk)])
    except NoReverseMatch:
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def _pretty_json(value: object) -> str:
    if not value:
        return "—"
    return format_html('<pre class="ff-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


class PipelineRunAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "pipeline_link",
        "status_column",
        "triggered_by",
        "queued_at",
        "started_at",
        "finished_at",
        "duration_column",
        "setup_duration_column",
        "exit_code",
        "commit_column",
    )
    list_display_links = ("short_id",)
    # Sorting by exit code, setup duration or commit would need more indexes on every run; the
    # status filter finds failures, and the run page shows the setup time and the commit.
    sortable_by = tuple(
        c for c in list_display if c not in {"setup_duration_column", "exit_code", "commit_column"}
    )
    list_filter = ("status", "triggered_by", "pipeline")
    search_fields = ("id",)  # shows the box; get_search_results decides what matches
    search_help_text = (
        "A run id, or its first 4 or more characters; or the exact name of a pipeline."
    )
    date_hierarchy = "queued_at"
    list_select_related = False  # the columns need pipeline_id only, not a join
    list_per_page = 50
    show_full_result_count = False
    paginator = CappedPaginator
    actions = ("cancel_selected", "retry_selected")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "pipeline_link",
                    "status_detail",
                    "triggered_by",
                    "run_config_id",
                    "git_commit",
                    "route_column",
                    "exit_code",
                    "error_message",
                    "duration_detail",
                    "setup_duration_detail",
                )
            },
        ),
        ("Resources", {"fields": ("limits_detail", "resources")}),
        (
            "Timing",
            {
                "fields": (
                    "queued_at",
                    "not_before",
                    "started_at",
                    "finished_at",
                    "cancel_requested_at",
                )
            },
        ),
        (
            "Related",
            {
                "fields": (
                    "parent_run_link",
                    "child_runs_links",
                    "scheduled_job_link",
                    "retry_attempt",
                    "restart_count",
                    "chain_depth",
                )
            },
        ),
        ("Artifacts", {"fields": ("artifacts_column",)}),
        ("Input", {"fields": ("parameters_pretty", "env_vars_pretty")}),
        (
            "Engine",
            {
                "classes": ("collapse",),
                "fields": (
                    "uv_version",
                    "engine_id",
                    "container_id",
                    "idempotency_key",
                    "log_file",
                    "metrics_file",
                ),
            },
        ),
    )
    readonly_fields = tuple(f for _, opts in fieldsets for f in opts["fields"])

    class Media:
        css = {"all": ("runs_app/run_admin.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[RunChangeList]:
        return RunChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        return run_search(queryset, search_term), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        cl = getattr(response, "context_data", {}).get("cl")
        if isinstance(cl, RunChangeList) and cl.requested_page:
            reach = (
                f"the pages go back through the newest {cl.paginator.cap_label} matching runs"
                if cl.paginator.capped
                else f"there are {cl.paginator.num_pages}"
            )
            self.message_user(
                request,
                f"Page {cl.requested_page} is past the last page ({reach}); showing page "
                f"{cl.page_num}. Narrow the list with a filter, a date or a run id search.",
                messages.WARNING,
            )
        return response

    # --- permissions ----------------------------------------------------------------------------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are created by triggers (Run now, API, schedules), never by hand

    def has_change_permission(self, request: HttpRequest, obj: PipelineRun | None = None) -> bool:
        # Nobody edits a run: every role gets Django's read-only page (view permission), with
        # no Save buttons. Cancel and Retry are actions of their own.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PipelineRun | None = None) -> bool:
        # The role table decides who deletes (ADMIN only); a live run is never deleted, or its
        # container would lose its row.
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.is_terminal)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "cancel")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "retry")

    # --- list columns ---------------------------------------------------------------------------
    def action_checkbox(self, obj: PipelineRun) -> str:
        # The admin renders this box through a form widget's template, once per row: a fifth of
        # the list's time. The same markup, formatted directly.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            f"Select this object for an action - {obj}",
        )

    @admin.display(description="run", ordering="id")
    def short_id(self, obj: PipelineRun) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="commit")
    def commit_column(self, obj: PipelineRun) -> str:
        # With git sync: the commit the run ran; the full id on hover.
        if not obj.git_commit:
            return "—"
        return format_html('<code title="{}">{}</code>', obj.git_commit, obj.git_commit[:12])

    @admin.display(description="pipeline", ordering="pipeline_id")
    def pipeline_link(self, obj: PipelineRun) -> str:
        return _admin_link("admin:pipelines_app_pipeline_change", obj.pipeline_id, obj.pipeline_id)

    @admin.display(description="status", ordering="status")
    def status_column(self, obj: PipelineRun) -> str:
        return status_badge(obj.status, cancel_requested=bool(obj.cancel_requested_at))

    @admin.display(description="duration", ordering="duration")
    def duration_column(self, obj: PipelineRun) -> str:
        if obj.status == RunStatus.RUNNING and obj.started_at:
            return f"{format_seconds(timezone.now() - obj.started_at)} (running)"
        return format_seconds(obj.elapsed) if obj.finished_at else "—"

    @admin.display(description="setup")
    def setup_duration_column(self, obj: PipelineRun) -> str:
        return format_seconds(obj.setup_duration)

    # --- change page fields ---------------------------------------------------------------------
    @admin.display(description="status")
    def status_detail(self, obj: PipelineRun) -> str:
        return self.status_column(obj)

    @admin.display(description="duration")
    def duration_detail(self, obj: PipelineRun) -> str:
        return format_seconds(obj.elapsed)

    @admin.display(description="setup duration")
    def setup_duration_detail(self, obj: PipelineRun) -> str:
        return format_seconds(obj.setup_duration)

    @admin.display(description="limits in force")
    def limits_detail(self, obj: PipelineRun) -> str:
        return limits_summary(obj.limits)

    @admin.display(description="CPU / RAM")
    def resources(self, obj: PipelineRun) -> str:
        summary = resource_summary(
            samples=metrics_read(run=obj), peak_memory_bytes=obj.peak_memory_bytes
        )
        if not summary.samples and summary.memory_peak is None:
            if metrics_missing(run=obj):
                return f"Metrics file missing: {obj.metrics_file} is not in the data directory."
            return "No metrics recorded."
        cpu = (
            f"avg {summary.cpu_avg:.1f}% · max {summary.cpu_max:.1f}%"
            if summary.cpu_avg is not None
            else "—"
        )
        return format_html(
            '<div class="ff-resources"><div>CPU: {} {}</div><div>Peak memory: {} {}</div>'
            '<div class="help">{} sample(s)</div></div>',
            cpu,
            sparkline(summary.cpu_series, colour="#0d6efd"),
            format_bytes(summary.memory_peak),
            sparkline(summary.memory_series, colour="#6f42c1"),
            summary.samples,
        )

    @admin.display(description="parent run")
    def parent_run_link(self, obj: PipelineRun) -> str:
        if obj.parent_run_id is None:
            return "—"
        return _admin_link(
            "admin:runs_app_pipelinerun_change", obj.parent_run_id, obj.parent_run_id
        )

    @admin.display(description="child runs")
    def child_runs_links(self, obj: PipelineRun) -> str:
        children = list(obj.child_runs.order_by("queued_at").values_list("id", "status")[:50])
        if not children:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "{} {}",
            (
                (_admin_link("admin:runs_app_pipelinerun_change", pk, pk), status)
                for pk, status in children
            ),
        )

    @admin.display(description="schedule")
    def scheduled_job_link(self, obj: PipelineRun) -> str:
        if obj.scheduled_job_id is None:
            return "—"
        return _admin_link(
            "admin:runs_app_scheduledjob_change", obj.scheduled_job_id, obj.scheduled_job_id
        )

    @admin.display(description="route")
    def route_column(self, obj: PipelineRun) -> str:
        return obj.route or "—"

    @admin.display(description="files")
    def artifacts_column(self, obj: PipelineRun) -> str:
        artifacts = run_artifacts(run=obj)
        if not artifacts:
            return "No artifacts (a notebook pipeline keeps its executed notebook here)."
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}" class="ff-artifact">{}</a> ({})',
            (
                (
                    reverse(
                        "admin:runs_app_pipelinerun_artifact", args=[quote(obj.pk), artifact.name]
                    ),
                    artifact.name,
                    format_bytes(artifact.size),
                )
                for artifact in artifacts
            ),
        )

    @admin.display(description="parameters")
    def parameters_pretty(self, obj: PipelineRun) -> str:
        return _pretty_json(obj.parameters)

    @admin.display(description="environment (secrets masked)")
    def env_vars_pretty(self, obj: PipelineRun) -> str:
        return _pretty_json(obj.env_vars)

    # --- change page: log, buttons --------------------------------------------------------------
    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: PipelineRun | None = None,
    ) -> TemplateResponse:
        if obj is not None:
            lines, offset, truncated = log_tail(run=obj)
            pk = quote(obj.pk)
            context.update(
                log_lines=lines,
                log_offset=offset,
                log_truncated=truncated,
                log_live=not obj.is_terminal,
                log_url=reverse("admin:runs_app_pipelinerun_log", args=[pk]),
                log_download_url=reverse("admin:runs_app_pipelinerun_log_download", args=[pk]),
                has_log_file=log_path(run=obj) is not None,
                log_missing=log_missing(run=obj),
                can_cancel=not obj.is_terminal and self.has_cancel_permission(request),
                can_retry=obj.is_terminal and self.has_retry_permission(request),
                cancel_url=reverse("admin:runs_app_pipelinerun_cancel", args=[pk]),
                retry_url=reverse("admin:runs_app_pipelinerun_retry", args=[pk]),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/log/", view(self.log_view), name="runs_app_pipelinerun_log"),
            path(
                "<path:object_id>/log/download/",
                view(self.log_download_view),
                name="runs_app_pipelinerun_log_download",
            ),
            path(
                "<path:object_id>/artifacts/<str:name>",
                view(self.artifact_view),
                name="runs_app_pipelinerun_artifact",
            ),
            path(
                "<path:object_id>/cancel/",
                view(require_POST(self.cancel_view)),
                name="runs_app_pipelinerun_cancel",
            ),
            path(
                "<path:object_id>/retry/",
                view(require_POST(self.retry_view)),
                name="runs_app_pipelinerun_retry",
            ),
            *super().get_urls(),
        ]

    def _viewable_run(self, request: HttpRequest, object_id: str) -> PipelineRun:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404(f"No run with id {object_id!r}.")
        return run

    def log_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """New log text from `offset`, plus the run's status so the page knows when to stop."""
        # The status is read before the log: the engine writes the last lines before it marks
        # the run finished, so a terminal status means this read sees the whole log.
        run = self._viewable_run(request, object_id)
        try:
            offset = log_offset_parse(raw=request.GET.get("offset", "0"))
        except InvalidRunRequest as exc:
            return service_error_json(exc)
        data, next_offset = log_read(run=run, offset=offset)
        response = JsonResponse(
            {
                "lines": log_lines_json(data),
                "offset": next_offset,
                "status": run.status,
                "terminal": run.is_terminal,
                "cancel_requested": run.cancel_requested_at is not None,
                "log_missing": log_missing(run=run),
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def log_download_view(self, request: HttpRequest, object_id: str) -> FileResponse:
        run = self._viewable_run(request, object_id)
        path_ = log_path(run=run)
        if path_ is None:
            raise Http404(
                "Log file missing." if log_missing(run=run) else "This run has no log file."
            )
        return FileResponse(
            path_.open("rb"),
            as_attachment=True,
            filename=f"run-{run.pk}.log",
            content_type="text/plain; charset=utf-8",
        )

    def artifact_view(self, request: HttpRequest, object_id: str, name: str) -> FileResponse:
        run = self._viewable_run(request, object_id)
        artifact = run_artifact(run=run, name=name)
        if artifact is None:
            raise Http404(f"This run has no artifact {name!r}.")
        return artifact_response(run=run, artifact=artifact)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._viewable_run(request, object_id)
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        try:
            run = run_cancel(run=run, audit=AuditContext.from_request(request, interface="admin"))
        except RunError as exc:
            self.message_user(request, f"Could not cancel run {run.pk}: {exc}", messages.ERROR)
        else:
            self.log_change(request, run, "Cancelled")
            self.message_user(request, _cancel_message(run), messages.SUCCESS)
        return redirect(reverse("admin:runs_app_pipelinerun_change", args=[quote(run.pk)]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._viewable_run(request, object_id)
        if not self.has_retry_permission(request):
            raise PermissionDenied
        try:
            new_run = run_retry(
                run=run,
                triggered_by=TriggeredBy.MANUAL,
                audit=AuditContext.from_request(request, interface="admin"),
            )
        except RunError as exc:
            self.message_user(request, f"Could not retry run {run.pk}: {exc}", messages.ERROR)
            return redirect(reverse("admin:runs_app_pipelinerun_change", args=[quote(run.pk)]))
        self.log_change(request, run, f"Retried as run {new_run.pk}")
        self.message_user(request, f"Run {new_run.pk} queued (retry of {run.pk}).")
        return redirect(reverse("admin:runs_app_pipelinerun_change", args=[quote(new_run.pk)]))

    # --- deleting: the service removes the log and metrics files too ----------------------------
    def delete_model(self, request: HttpRequest, obj: PipelineRun) -> None:
        try:
            run_delete(run=obj, audit=AuditContext.from_request(request, interface="admin"))
        except RunError as exc:
            self.message_user(request, f"Could not delete run {obj.pk}: {exc}", messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(
            request,
            queryset,
            verb="deleted",
            service=partial(
                run_delete, audit=AuditContext.from_request(request, interface="admin")
            ),
            report_success=False,
        )

    # --- actions --------------------------------------------------------------------------------
    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(
            request,
            queryset,
            verb="cancelled",
            service=partial(
                run_cancel, audit=AuditContext.from_request(request, interface="admin")
            ),
        )

    @admin.action(description="Retry selected runs", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(
            request,
            queryset,
            verb="retried",
            service=partial(
                run_retry,
                triggered_by=TriggeredBy.MANUAL,
                audit=AuditContext.from_request(request, interface="admin"),
            ),
        )

    def _apply(
        self,
        request: HttpRequest,
        queryset: QuerySet,
        *,
        verb: str,
        service: Any,
        report_success: bool = True,
    ) -> None:
        # report_success=False for deleting: Django's delete action logs and reports that itself.
        done, errors = 0, []
        for run in queryset:
            try:
                service(run=run)
            except RunError as exc:
                errors.append(f"{str(run.pk)[:8]}: {exc}")
            else:
                done += 1
                if report_success:
                    self.log_change(request, run, verb.capitalize())
        if done and report_success:
            self.message_user(request, f"{done} run(s) {verb}.", messages.SUCCESS)
        if errors:
            more = len(errors) - MAX_REPORTED_ERRORS
            shown = "; ".join(errors[:MAX_REPORTED_ERRORS]) + (
                f"; and {more} more" if more > 0 else ""
            )
            self.message_user(
                request, f"{len(errors)} run(s) could not be {verb}: {shown}", messages.ERROR
            )


def _cancel_message(run: PipelineRun) -> str:
    if run.status == RunStatus.CANCELLED:
        return f"Run {run.pk} cancelled."
    return f"Cancellation of run {run.pk} requested; the engine stops it within seconds."
