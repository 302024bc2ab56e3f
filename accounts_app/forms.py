from __future__ import annotations

from django import forms
from django.conf import settings

from accounts_app.roles import Role
from accounts_app.services import INVITATION_DEFAULT_DAYS, INVITATION_MAX_DAYS, TOKEN_MAX_DAYS


class TokenIssueForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for.")
    days = forms.IntegerField(min_value=1, max_value=TOKEN_MAX_DAYS, label="Valid for (days)")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["days"].initial = settings.FASTFLOW_TOKEN_DEFAULT_DAYS


class InvitationCreateForm(forms.Form):
    recipient_email = forms.EmailField(label="Recipient email")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.READONLY)
    days = forms.IntegerField(
        min_value=1,
        max_value=INVITATION_MAX_DAYS,
        initial=INVITATION_DEFAULT_DAYS,
        label="Expires after (days)",
    )
