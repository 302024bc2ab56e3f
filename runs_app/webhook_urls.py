from __future__ import annotations

from django.urls import path, re_path

import fastflow_site.api.converters  # noqa: F401 - registers <name:...>
from runs_app.webhooks import webhook_not_found, webhook_trigger

urlpatterns = [
    path("<name:pipeline_name>/<name:webhook_key>", webhook_trigger, name="webhook-trigger"),
    path("<name:pipeline_name>/<name:webhook_key>/", webhook_trigger, name="webhook-trigger-slash"),
    # Anything else under /webhooks/ gets the same answer as a wrong key.
    re_path(r"^", webhook_not_found),
]
