from __future__ import annotations

from django.urls import path

import fastflow_site.api.converters  # noqa: F401 - registers <name:...>
from secrets_app import api

urlpatterns = [
    path("secrets/", api.SecretListApi.as_view(), name="api-secrets"),
    path("secrets/<name:key>/", api.SecretDetailApi.as_view(), name="api-secret"),
    path("encrypted-values/", api.EncryptedValueCreateApi.as_view(), name="api-encrypted-values"),
]
