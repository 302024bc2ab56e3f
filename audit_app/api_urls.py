from __future__ import annotations

from django.urls import path

from audit_app import api

urlpatterns = [path("audit/", api.AuditListApi.as_view(), name="api-audit")]
