from __future__ import annotations

from django.urls import path

from runs_app.prometheus import metrics

urlpatterns = [
    path("metrics", metrics, name="metrics"),
]
