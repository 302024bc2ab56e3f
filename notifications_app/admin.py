"""The notifications admin (ADMIN only: no other role may even view these models).

Targets: the Apprise URL is write-only, like a secret's value; "Send test notification" sends
at once and reports the attempt. Notifications and deliveries are a read-only record of what
was sent, to whom, and every attempt with its error.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from audit_app.context import AuditContext
from fastflow_site.admin_readonly import ReadOnly
from notifications_app.errors import InvalidNotificationInput
from notifications_app.models import (
    DeliveryStatus,
    NotificationAttempt,
    NotificationChannel,
    NotificationDelivery,
    NotificationEvent,
)
from notifications_app.services import (
    channel_create,
    channel_delete,
    channel_send_test,
    channel_update,
    channel_url_validate,
)
from pipelines_app.spec_ops import DEFAULT_EVENTS, NOTIFY_EVENTS, SUBSCRIBABLE_EVENTS

HIDDEN = "••••••"
STATUS_COLOURS = {
    DeliveryStatus.SENT: "#2e7d32",
    DeliveryStatus.FAILED: "#c62828",
    DeliveryStatus.PENDING: "#6d6d6d",
    DeliveryStatus.SENDING: "#1565c0",
}


class NotificationChannelForm(forms.ModelForm):
    url = forms.CharField(
        required=False,
        strip=True,
        label="Apprise URL",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="e.g. mailtos://user:password@smtp.example.com?to=ops@example.com, "
        "slack://TokenA/TokenB/TokenC, json://hooks.example.com/fastflow. Write-only: the "
        "stored URL (it holds credentials) is never shown. On change, leave empty to keep it.",
    )
    events = forms.MultipleChoiceField(
        choices=[(e, f"{e} — {NOTIFY_EVENTS[e]}") for e in SUBSCRIBABLE_EVENTS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=list(DEFAULT_EVENTS),
        help_text="Default events of this target; a pipeline's `notifications.events` replaces "
        "them for that pipeline.",
    )

    class Meta:
        model = NotificationChannel
        fields = ("name", "url", "events", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("url", None)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        url = cleaned.get("url")
        if self.instance._state.adding and not url:
            self.add_error("url", "Enter the target's Apprise URL.")
        elif url:
            try:
                channel_url_validate(url=url)
            except InvalidNotificationInput as exc:
                self.add_error("url", str(exc))
        return cleaned

    def _post_clean(self) -> None:
        # The URL is encrypted by the service; the model never sees the plaintext.
        url = self.cleaned_data.pop("url", None)
        super()._post_clean()
        self.cleaned_data["url"] = url


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = ("name", "scheme", "enabled", "event_list", "sent", "failed", "updated_at")
    list_filter = ("enabled", "scheme")
    search_fields = ("name",)
    readonly_fields = ("shown_url", "scheme", "created_at", "updated_at")
    actions = ("send_test",)

    def get_fieldsets(self, request: HttpRequest, obj: NotificationChannel | None = None) -> Any:
        url = ("url",) if obj is None else ("shown_url", "url")
        record = ("Record", {"classes": ("collapse",), "fields": ("created_at", "updated_at")})
        return ((None, {"fields": ("name", "enabled", *url, "scheme", "events")}), record)

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationChannel]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                sent_count=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SENT)),
                failed_count=Count(
                    "deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)
                ),
            )
        )

    @admin.display(description="events")
    def event_list(self, obj: NotificationChannel) -> str:
        return ", ".join(obj.events) or "—"

    @admin.display(description="sent", ordering="sent_count")
    def sent(self, obj: NotificationChannel) -> int:
        return getattr(obj, "sent_count", 0)

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, obj: NotificationChannel) -> int:
        return getattr(obj, "failed_count", 0)

    @admin.display(description="Apprise URL")
    def shown_url(self, obj: NotificationChannel) -> str:
        return f"{obj.scheme}://{HIDDEN}" if obj.pk else "—"

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup == "url" or lookup.startswith("url__"):
            return False
        return super().lookup_allowed(lookup, value, request)

    @method_decorator(sensitive_post_parameters("url"))
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return super().changeform_view(request, *args, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: NotificationChannel, form: Any, change: bool
    ) -> None:
        data = form.cleaned_data
        if change:
            saved = channel_update(
                channel=NotificationChannel.objects.get(pk=obj.pk),
                name=data["name"],
                url=data.get("url") or None,
                events=list(data["events"]),
                enabled=data["enabled"],
                audit=AuditContext.from_request(request, interface="admin"),
            )
        else:
            saved = channel_create(
                name=data["name"],
                url=data["url"],
                events=list(data["events"]),
                enabled=data["enabled"],
                audit=AuditContext.from_request(request, interface="admin"),
            )
        obj.pk, obj.url, obj.scheme = saved.pk, saved.url, saved.scheme
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: NotificationChannel) -> None:
        channel_delete(channel=obj, audit=AuditContext.from_request(request, interface="admin"))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for channel in queryset:
            channel_delete(
                channel=channel, audit=AuditContext.from_request(request, interface="admin")
            )

    @admin.action(description="Send test notification")
    def send_test(self, request: HttpRequest, queryset: QuerySet) -> None:
        for channel in queryset:
            delivery = channel_send_test(channel=channel)
            if delivery.status == DeliveryStatus.SENT:
                messages.success(request, f"Test notification sent to {channel.name}.")
            else:
                messages.error(
                    request, f"Test notification to {channel.name} failed: {delivery.last_error}"
                )


def status_badge(status: str) -> str:
    return format_html(
        '<strong style="color:{}">{}</strong>', STATUS_COLOURS.get(status, "#000"), status
    )


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    pass


class DeliveryInline(ReadOnly, admin.TabularInline):
    model = NotificationDelivery
    fields = ("target_label", "badge", "attempts", "next_attempt_at", "sent_at", "last_error")
    readonly_fields = fields
    extra = 0
    show_change_link = True

    @admin.display(description="status")
    def badge(self, obj: NotificationDelivery) -> str:
        return status_badge(obj.status)


class AttemptInline(DeliveryInline):
    model = NotificationAttempt
    fields = ("number", "ok", "engine_id", "started_at", "finished_at", "error")
    readonly_fields = fields
    show_change_link = False


@admin.register(NotificationEvent)
class NotificationEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "pipeline_name", "run_link", "deliveries_summary")
    list_filter = ("kind", "created_at")
    search_fields = ("pipeline_name", "key", "=run_id")
    readonly_fields = ("key", "kind", "pipeline_name", "run_link", "created_at", "title", "body")
    fields = readonly_fields
    inlines = (DeliveryInline,)
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationEvent]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_deliveries=Count("deliveries"),
                n_sent=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.SENT)),
                n_failed=Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.FAILED)),
            )
        )

    @admin.display(description="run")
    def run_link(self, obj: NotificationEvent) -> str:
        if not obj.run_id:
            return "—"
        return format_html(
            '<a href="/admin/runs_app/pipelinerun/{}/change/">{}</a>', obj.run_id, obj.run_id
        )

    @admin.display(description="deliveries")
    def deliveries_summary(self, obj: NotificationEvent) -> str:
        total = getattr(obj, "n_deliveries", 0)
        if not total:
            return "no target"
        return f"{getattr(obj, 'n_sent', 0)} sent, {getattr(obj, 'n_failed', 0)} failed of {total}"


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "event_kind",
        "pipeline",
        "target_label",
        "badge",
        "attempts",
        "next_attempt_at",
        "last_error_short",
    )
    list_filter = ("status", "event__kind", "channel")
    search_fields = ("target_label", "event__pipeline_name", "last_error")
    list_select_related = ("event",)
    readonly_fields = (
        "event",
        "target_label",
        "badge",
        "attempts",
        "next_attempt_at",
        "claimed_by",
        "claimed_until",
        "sent_at",
        "last_error",
        "created_at",
    )
    fields = readonly_fields
    inlines = (AttemptInline,)

    @admin.display(description="event", ordering="event__kind")
    def event_kind(self, obj: NotificationDelivery) -> str:
        return obj.event.kind

    @admin.display(description="pipeline", ordering="event__pipeline_name")
    def pipeline(self, obj: NotificationDelivery) -> str:
        return obj.event.pipeline_name or "—"

    @admin.display(description="status", ordering="status")
    def badge(self, obj: NotificationDelivery) -> str:
        return status_badge(obj.status)

    @admin.display(description="last error")
    def last_error_short(self, obj: NotificationDelivery) -> str:
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error
