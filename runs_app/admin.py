from __future__ import annotations

from django.contrib import admin
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from pipelines_app import admin as pipelines_admin
from pipelines_app.models import Pipeline
from runs_app.admin_engines import EngineInstanceAdmin
from runs_app.admin_runs import PipelineRunAdmin
from runs_app.admin_schedules import ScheduledJobAdmin
from runs_app.admin_views import PipelineRunsAdminMixin
from runs_app.models import EngineInstance, PipelineRun, ScheduledJob

admin.site.register(PipelineRun, PipelineRunAdmin)
admin.site.register(ScheduledJob, ScheduledJobAdmin)
admin.site.register(EngineInstance, EngineInstanceAdmin)


class PipelineAdmin(PipelineRunsAdminMixin, pipelines_admin.PipelineAdmin):
    """The pipeline admin as installed: pipelines_app's own, plus Run now and the Last run
    column. Registered from here so the import goes from runs to pipelines, never back."""


# Importing pipelines_app.admin above registered its own admin; this one replaces it.
admin.site.unregister(Pipeline)
admin.site.register(Pipeline, PipelineAdmin)

# APScheduler's own tables are the engine's mirror of ScheduledJob rows: editing them by hand
# would put the two out of step, so the admin shows ScheduledJob only.
for _model in (DjangoJob, DjangoJobExecution):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
