from __future__ import annotations

from django.urls import path

from gitsync_app import api

urlpatterns = [
    path("git/", api.RepositoryApi.as_view(), name="api-git"),
    path("git/sync/", api.RepositorySyncApi.as_view(), name="api-git-sync"),
]
