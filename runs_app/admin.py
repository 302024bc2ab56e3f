from __future__ import annotations

from django.contrib import admin
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from runs_app.admin_engines import EngineInstanceAdmin
from runs_app.admin_runs import PipelineRunAdmin
from runs_app.admin_schedules import ScheduledJobAdmin
from runs_app.models import EngineInstance, PipelineRun, ScheduledJob

admin.site.register(PipelineRun, PipelineRunAdmin)
admin.site.register(ScheduledJob, ScheduledJobAdmin)
admin.site.register(EngineInstance, EngineInstanceAdmin)

# APScheduler's own tables are the engine's mirror of ScheduledJob rows: editing them by hand
# would put the two out of step, so the admin shows ScheduledJob only.
for _model in (DjangoJob, DjangoJobExecution):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
