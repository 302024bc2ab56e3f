"""What the pipeline admin shows and does about runs, as one mixin over pipelines_app's own
`PipelineAdmin`. runs_app/admin.py registers the combination, so `pipelines_app` imports nothing
of `runs_app` (the import contracts in pyproject.toml keep it so).

The pipeline admin gains:
- `<pipeline>/run/`: a form (run configuration + KEY=value parameters) that enqueues a run;
- the changelist action "Run now (no parameters)";
- `has_run_permission` in the change form context, for the "Run now" button;
- `last_status_column`: the latest run's status badge, from the `last_run_status` annotation
  (`PipelineQuerySet.with_last_run()`), in the list and the change form, just before the
  success rate;
- `log_disk_column` and `retention_column`: disk used by the pipeline's run logs (cached for a
  few minutes: a folder walk per pipeline) and the run retention in force, in a "Storage"
  section of the change form (before "Discovery"); the disk use also ends the list;
- `daemon_column`: a daemon pipeline's restart settings, its latest restart and whether it is
  crash-looping (for the change form).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.contrib.admin.utils import quote, unquote
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts_app.roles import role_can
from audit_app.context import AuditContext
from pipelines_app.models import Pipeline
from runs_app.admin_display import status_badge
from runs_app.daemon import daemon_state
from runs_app.errors import InvalidRunRequest, PipelineNotFound, PipelineNotRunnable, RunError
from runs_app.forms import RunNowForm
from runs_app.models import TriggeredBy
from runs_app.retention import pipeline_log_bytes, retention_policy
from runs_app.services import run_enqueue

RUN_NOW_ACTION = "run_now_without_parameters"
LOG_DISK_CACHE_SECONDS = 300
LAST_RUN_COLUMN = "last_status_column"
# The column goes right before this one, in the list and in the change form's fieldsets.
LAST_RUN_BEFORE = "success_rate_column"
STORAGE_FIELDSET = ("Storage", {"fields": ("log_disk_column", "retention_column")})
STORAGE_BEFORE = "Discovery"
# A daemon pipeline's section, after its schedules (restart_interval is one).
DAEMON_FIELDSET = ("Daemon", {"fields": ("daemon_column",)})
DAEMON_AFTER = "Schedules"
RUN_READONLY_FIELDS = (LAST_RUN_COLUMN, "log_disk_column", "retention_column", "daemon_column")


def _with_last_run(fields: Sequence[Any]) -> tuple[Any, ...]:
    fields = tuple(fields)
    if LAST_RUN_BEFORE not in fields:
        return fields
    at = fields.index(LAST_RUN_BEFORE)
    return (*fields[:at], LAST_RUN_COLUMN, *fields[at:])


def _is_daemon(pipeline: Pipeline) -> bool:
    metadata = pipeline.metadata or {}
    return bool(metadata.get("restart_on_crash") or metadata.get("restart_interval"))


def _form_field_for(error_key: str, form: RunNowForm) -> str | None:
    """Map a service error key ('parameters', 'parameters.FOO', 'run_config_id') to a field."""
    name = error_key.split(".", 1)[0]
    return name if name in form.fields else None


class PipelineRunsAdminMixin:
    run_now_template = "admin/pipelines_app/pipeline/run_now.html"

    def has_run_permission(self, request: HttpRequest) -> bool:
        return role_can(request.user.role, "run")

    def get_urls(self) -> list:
        info = (self.opts.app_label, self.opts.model_name)
        return [
            path(
                "<path:object_id>/run/",
                self.admin_site.admin_view(self.run_now_view),
                name="{}_{}_run".format(*info),
            ),
            *super().get_urls(),
        ]

    def get_list_display(self, request: HttpRequest) -> Sequence[Any]:
        return (*_with_last_run(super().get_list_display(request)), "log_disk_column")

    def get_readonly_fields(self, request: HttpRequest, obj: Pipeline | None = None) -> Sequence:
        return (*super().get_readonly_fields(request, obj), *RUN_READONLY_FIELDS)

    def get_fieldsets(self, request: HttpRequest, obj: Pipeline | None = None) -> list:
        fieldsets = [
            (name, {**options, "fields": _with_last_run(options["fields"])})
            for name, options in super().get_fieldsets(request, obj)
        ]
        names = [name for name, _ in fieldsets]
        at = names.index(STORAGE_BEFORE) if STORAGE_BEFORE in names else len(fieldsets)
        fieldsets.insert(at, STORAGE_FIELDSET)
        if obj is not None and _is_daemon(obj):
            names = [name for name, _ in fieldsets]
            at = names.index(DAEMON_AFTER) + 1 if DAEMON_AFTER in names else len(fieldsets)
            fieldsets.insert(at, DAEMON_FIELDSET)
        return fieldsets

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Added here rather than in `actions` so the host admin keeps its own actions list.
        actions = super().get_actions(request)
        popup = IS_POPUP_VAR in request.GET
        if self.actions is not None and not popup and self.has_run_permission(request):
            actions[RUN_NOW_ACTION] = self.get_action(RUN_NOW_ACTION)
        return actions

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> TemplateResponse:
        context["has_run_permission"] = self.has_run_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="Last run", ordering="last_run_status")
    def last_status_column(self, obj: Pipeline) -> SafeString | str:
        status = getattr(obj, "last_run_status", None)  # absent on an unannotated instance
        return status_badge(status) if status else "—"

    @admin.display(description="Log disk use")
    def log_disk_column(self, obj: Pipeline) -> str:
        used = cache.get_or_set(
            f"pipeline-log-bytes:{obj.pipeline_name}",
            lambda: pipeline_log_bytes(pipeline_name=obj.pipeline_name),
            LOG_DISK_CACHE_SECONDS,
        )
        return filesizeformat(used)

    @admin.display(description="Retention in force")
    def retention_column(self, obj: Pipeline) -> str:
        return retention_policy(pipeline=obj).describe()

    @admin.display(description="Daemon")
    def daemon_column(self, obj: Pipeline) -> SafeString | str:
        spec = obj.spec if not obj.discovery_error else None
        if spec is None or not (spec.restart_on_crash or spec.restart_interval):
            return "—"
        settings_text = []
        if spec.restart_on_crash:
            settings_text.append(f"restarted after a crash, {spec.restart_cooldown} s cooldown")
        if spec.restart_interval:
            every = spec.restart_interval
            shown = f"every {every} s" if every.isdigit() else f"on cron {every}"
            settings_text.append(f"restarted {shown} (restart_interval)")
        state = daemon_state(pipeline_name=obj.pipeline_name)
        last = state.last_restart
        if last is None:
            restart = "No restart yet."
        else:
            url = reverse("admin:runs_app_pipelinerun_change", args=[quote(last.pk)])
            when = last.not_before or last.queued_at
            restart = format_html(
                'Last restart: <a href="{}">{}</a> {} (not before {}){}.',
                url,
                str(last.pk)[:8],
                status_badge(last.status),
                when.strftime("%Y-%m-%d %H:%M:%S UTC"),
                f", after {last.restart_count} quick crash(es) in a row"
                if last.restart_count
                else "",
            )
        warning = ""
        if state.crash_loop:
            warning = format_html(
                '<p class="ff-daemon-crash-loop" style="color:#dc3545;font-weight:600;">'
                "Crash-looping: {} quick crashes in a row; each further restart waits twice as "
                "long (at most {} s).</p>",
                last.restart_count,
                settings.FASTFLOW_DAEMON_BACKOFF_MAX_SECONDS,
            )
        return format_html(
            "<p>{}.</p><p>{}</p>{}", "; ".join(settings_text).capitalize(), restart, warning
        )

    @admin.action(description="Run now (no parameters)")
    def run_now_without_parameters(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not self.has_run_permission(request):
            raise PermissionDenied
        queued, errors = 0, []
        for pipeline in queryset:
            try:
                run = run_enqueue(
                    pipeline=pipeline,
                    triggered_by=TriggeredBy.MANUAL,
                    audit=AuditContext.from_request(request, interface="admin"),
                )
            except RunError as exc:
                errors.append(f"{pipeline.pk}: {exc}")
            else:
                queued += 1
                self.log_change(request, pipeline, f"Run now: queued run {run.pk}")
        if queued:
            self.message_user(request, f"{queued} run(s) queued.", messages.SUCCESS)
        if errors:
            self.message_user(request, f"Not queued: {'; '.join(errors)}", messages.ERROR)

    def run_now_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        pipeline: Pipeline | None = self.get_object(request, unquote(object_id))
        if pipeline is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_run_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = RunNowForm(request.POST, pipeline=pipeline)
            if form.is_valid():
                response = self._enqueue(request, pipeline, form)
                if response is not None:
                    return response
        else:
            form = RunNowForm(pipeline=pipeline)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run {pipeline.pk}",
            "opts": self.opts,
            "original": pipeline,
            "form": form,
            "not_runnable_reason": pipeline.not_runnable_reason,
            "change_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[quote(pipeline.pk)],
            ),
        }
        return TemplateResponse(request, self.run_now_template, context)

    def _enqueue(
        self, request: HttpRequest, pipeline: Pipeline, form: RunNowForm
    ) -> HttpResponse | None:
        """Queue the run and redirect to it; on a refused request, put the reason on the form."""
        try:
            run = run_enqueue(
                pipeline=pipeline,
                triggered_by=TriggeredBy.MANUAL,
                parameters=form.cleaned_data["parameters"],
                run_config_id=form.cleaned_data["run_config_id"],
                audit=AuditContext.from_request(request, interface="admin"),
            )
        except InvalidRunRequest as exc:
            for key, message in exc.fields.items():
                form.add_error(_form_field_for(key, form), message)
            if not exc.fields:
                form.add_error(None, str(exc))
            return None
        except (PipelineNotFound, PipelineNotRunnable) as exc:
            form.add_error(None, str(exc))
            return None
        self.log_change(request, pipeline, f"Run now: queued run {run.pk}")
        run_url = reverse("admin:runs_app_pipelinerun_change", args=[quote(run.pk)])
        self.message_user(
            request,
            format_html('Run <a href="{}">{}</a> queued.', run_url, run.pk),
            messages.SUCCESS,
        )
        return redirect(run_url)
