from __future__ import annotations

from django.urls import path

from gitsync_app.webhooks import git_push_webhook

urlpatterns = [path("", git_push_webhook, name="git-push-webhook")]
