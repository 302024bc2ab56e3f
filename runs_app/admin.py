from __future__ import annotations

from django.contrib import admin

from runs_app.admin_runs import PipelineRunAdmin
from runs_app.admin_schedules import EngineInstanceAdmin, ScheduledJobAdmin
from runs_app.models import EngineInstance, PipelineRun, ScheduledJob

admin.site.register(PipelineRun, PipelineRunAdmin)
admin.site.register(ScheduledJob, ScheduledJobAdmin)
admin.site.register(EngineInstance, EngineInstanceAdmin)
