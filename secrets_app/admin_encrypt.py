"""The admin's "Encrypt a value" page (WRITE and ADMIN): a value in, a Fernet token out, to
paste into pipeline.json's `encrypted_env`. Nothing is stored; the plaintext is never shown
again, logged or kept in the form (Django's error reports hide the POSTed value).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.views.decorators.debug import sensitive_post_parameters

from accounts_app.roles import role_can
from secrets_app.services import ENCRYPTED_VALUE_MAX_BYTES, encrypted_value_create


class EncryptValueForm(forms.Form):
    name = forms.CharField(
        required=False,
        max_length=255,
        label="Variable name",
        help_text="Optional: the environment variable's name, to get a line ready to paste.",
    )
    value = forms.CharField(
        strip=False,
        max_length=ENCRYPTED_VALUE_MAX_BYTES,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Encrypted with the current FASTFLOW_ENCRYPTION_KEY; not stored anywhere.",
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            cleaned["token"] = encrypted_value_create(
                value=cleaned["value"], name=cleaned.get("name", "")
            )
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned


@sensitive_post_parameters("value")
def encrypt_value_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    if not role_can(request.user.role, "encrypt_value"):
        raise PermissionDenied
    token = snippet = ""
    if request.method == "POST":
        form = EncryptValueForm(request.POST)
        if form.is_valid():
            token = form.cleaned_data["token"]
            name = form.cleaned_data.get("name") or "NAME"
            snippet = f"{json.dumps(name)}: {json.dumps(token)}"
            # A fresh form: the plaintext is not rendered back into the page.
            form = EncryptValueForm(initial={"name": form.cleaned_data.get("name", "")})
    else:
        form = EncryptValueForm()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Encrypt a value for pipeline.json",
        "form": form,
        "token": token,
        "snippet": snippet,
    }
    # admin_view() already marks the page never_cache (no-store): the token is not cached.
    return TemplateResponse(request, "admin/secrets_app/encrypt_value.html", context)
