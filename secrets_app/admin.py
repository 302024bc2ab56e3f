"""The secrets admin: values are write-only, like passwords.

A secret's value is never rendered, searched, filtered or logged; a parameter's plaintext is
shown because parameters are not confidential by definition.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from audit_app.context import AuditContext
from secrets_app import crypto
from secrets_app.admin_encrypt import encrypt_value_view
from secrets_app.models import Secret
from secrets_app.services import secret_delete, secret_reveal, secret_set, secret_validate

HIDDEN = "••••••"


class SecretForm(forms.ModelForm):
    value = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: the stored value is never shown. On change, leave empty to keep it.",
    )

    class Meta:
        model = Secret
        fields = ("key", "value", "is_parameter")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ModelForm copies the stored ciphertext into `initial`; a write-only field starts empty.
        self.initial.pop("value", None)
        self.plaintext: str | None = None

    @property
    def adding(self) -> bool:
        return self.instance._state.adding

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        key = cleaned.get("key") or self.instance.key
        value = cleaned.get("value") or ""
        is_parameter = bool(cleaned.get("is_parameter"))
        if value:
            self.plaintext = value
        elif self.adding:
            self.add_error("value", "Enter a value.")
        elif is_parameter != self.instance.is_parameter:
            # Switching between secret and parameter re-stores the current plaintext.
            try:
                self.plaintext = secret_reveal(secret=self.instance)
            except crypto.DecryptionError:
                self.add_error(
                    "value",
                    "The stored value cannot be decrypted with the configured "
                    "FASTFLOW_ENCRYPTION_KEY; enter the value again to change its kind.",
                )
        if key and self.plaintext is not None:
            try:
                secret_validate(key=key, value=self.plaintext)
            except ValidationError as exc:
                for field, messages in exc.message_dict.items():
                    self.add_error(field if field in self.fields else None, messages)
        return cleaned

    def _post_clean(self) -> None:
        # The value is written by secret_set (encrypted), never copied onto the model here,
        # so model validation must not see the form's raw (or empty) value.
        value = self.cleaned_data.pop("value", None)
        super()._post_clean()
        if value is not None:
            self.cleaned_data["value"] = value


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ("key", "is_parameter", "shown_value", "updated_at")
    list_filter = ("is_parameter",)
    search_fields = ("key",)
    ordering = ("key",)
    readonly_fields = ("shown_value", "created_at", "updated_at")
    list_per_page = 100

    def get_fieldsets(self, request: HttpRequest, obj: Secret | None = None) -> Any:
        main = ("key", "is_parameter", "value") if obj is None else ("key", "is_parameter")
        current = () if obj is None else (("Value", {"fields": ("shown_value", "value")}),)
        record = ("Record", {"classes": ("collapse",), "fields": ("created_at", "updated_at")})
        return ((None, {"fields": main}), *current, record)

    def get_urls(self) -> list:
        # The "Encrypt a value" page lives here for its URL only: WRITE may use it without
        # seeing secrets (the view checks the `encrypt_value` action itself).
        view = self.admin_site.admin_view(lambda request: encrypt_value_view(request, self))
        return [
            path("encrypt-value/", view, name="secrets_app_encrypt_value"),
            *super().get_urls(),
        ]

    # The key is the primary key: renaming would silently create a second row.
    def get_readonly_fields(self, request: HttpRequest, obj: Secret | None = None) -> Any:
        return (*self.readonly_fields, "key") if obj is not None else self.readonly_fields

    @admin.display(description="value")
    def shown_value(self, obj: Secret) -> str:
        if obj.pk is None:
            return "—"
        return obj.value if obj.is_parameter else HIDDEN

    # ?value__startswith=… would let anyone with list access probe ciphertext or values.
    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if lookup == "value" or lookup.startswith("value__"):
            return False
        return super().lookup_allowed(lookup, value, request)

    @method_decorator(sensitive_post_parameters("value"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Secret, form: SecretForm, change: bool) -> None:
        if form.plaintext is None:
            return  # nothing about the value or its kind changed
        saved = secret_set(
            key=obj.key,
            value=form.plaintext,
            is_parameter=obj.is_parameter,
            audit=AuditContext.from_request(request, interface="admin"),
        )
        obj.value, obj.created_at, obj.updated_at = saved.value, saved.created_at, saved.updated_at
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Secret) -> None:
        secret_delete(key=obj.key, audit=AuditContext.from_request(request, interface="admin"))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Secret]) -> None:
        for key in queryset.values_list("key", flat=True):
            secret_delete(key=key, audit=AuditContext.from_request(request, interface="admin"))
