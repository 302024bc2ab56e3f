"""The audit log in the admin: read-only (ADMIN only, like everything not granted to a role)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from audit_app.models import AuditEntry
from fastflow_site.admin_readonly import ReadOnly


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnly, admin.ModelAdmin):
    list_display = (
        "created_at",
        "actor_name",
        "actor_type",
        "interface",
        "ip",
        "action",
        "target_type",
        "target_repr",
        "changed_fields",
    )
    list_filter = ("action", "actor_type", "interface", "target_type", "created_at")
    search_fields = ("actor_name", "action", "target_repr", "=target_id", "=ip")
    date_hierarchy = "created_at"
    list_per_page = 100
    readonly_fields = (*AuditEntry.FIELDS[:-2], "changes_pretty", "details_pretty")
    fields = readonly_fields

    @admin.display(description="changed")
    def changed_fields(self, obj: AuditEntry) -> str:
        return ", ".join(sorted(obj.changes)) or "—"

    @admin.display(description="changes")
    def changes_pretty(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True))

    @admin.display(description="details")
    def details_pretty(self, obj: AuditEntry) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.details, indent=2, sort_keys=True))
