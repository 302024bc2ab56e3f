"""Admin for users, invitations and API tokens. Every write goes through accounts_app.services."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, Case, Count, QuerySet, Value, When
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_variables

from accounts_app.errors import AccountError, InvalidInput
from accounts_app.forms import InvitationCreateForm
from accounts_app.models import ApiToken, Invitation, User
from accounts_app.services import (
    invitation_create,
    token_revoke,
    user_block,
    user_delete,
    user_unblock,
    user_update,
    user_update_check,
)
from audit_app.context import AuditContext

# Not used by Fast-Flow: providers come from the environment, roles replace groups, and the
# provider links live on User. Hiding them avoids two sources of truth in the admin.
_UNUSED = [Group, EmailAddress, SocialAccount, SocialApp, SocialToken]
for _model in _UNUSED:
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class UserChangeForm(forms.ModelForm):
    actor: User | None = None  # set per request by UserAdmin.get_form

    class Meta:
        model = User
        fields = ["email", "role", "blocked"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        # self.instance already carries the submitted values; compare with the stored row.
        stored = User.objects.get(pk=self.instance.pk)
        try:
            user_update_check(
                user=stored, actor=self.actor, role=data.get("role"), blocked=data.get("blocked")
            )
        except InvalidInput as exc:
            field = next(iter(exc.fields), None)
            self.add_error(field if field in self.fields else None, str(exc))
        except AccountError as exc:
            self.add_error("role" if data.get("role") != stored.role else "blocked", str(exc))
        return data


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    form = UserChangeForm
    list_display = (
        "avatar",
        "username",
        "email",
        "role",
        "blocked",
        "providers",
        "token_count",
        "last_login",
        "created_at",
    )
    list_display_links = ("username",)
    list_filter = ("role", "blocked")
    search_fields = ("username", "email", "github_id", "google_id")
    ordering = ("username",)
    readonly_fields = (
        "id",
        "username",
        "github_id",
        "google_id",
        "avatar_url",
        "last_login",
        "created_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "username", "email", "role", "blocked")}),
        ("Login providers", {"fields": ("github_id", "google_id", "avatar_url")}),
        ("Activity", {"fields": ("last_login", "created_at")}),
    )
    actions = ("block_users", "unblock_users")

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(n_tokens=Count("api_tokens", distinct=True))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def has_add_permission(self, request: HttpRequest) -> bool:
        # People arrive through invitations (or `createadmin`), never by typing them in.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and obj.pk == request.user.pk:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        try:
            user_delete(
                user=obj,
                actor=request.user,
                audit=AuditContext.from_request(request, interface="admin"),
            )
        except AccountError as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # Deleting people in bulk could remove the last ADMIN; block them instead.
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        stored = User.objects.get(pk=obj.pk)
        try:
            user_update(
                user=stored,
                actor=request.user,
                role=obj.role,
                blocked=obj.blocked,
                email=obj.email if "email" in form.changed_data else None,
                audit=AuditContext.from_request(request, interface="admin"),
            )
        except AccountError as exc:  # a race lost since the form validated
            self.message_user(request, str(exc), messages.ERROR)

    @admin.display(description="")
    def avatar(self, obj: User) -> str:
        if not obj.avatar_url:
            return ""
        return format_html(
            '<img src="{}" alt="" width="24" height="24" style="border-radius:50%">',
            obj.avatar_url,
        )

    @admin.display(description="Providers")
    def providers(self, obj: User) -> str:
        linked = [
            name for name, uid in (("GitHub", obj.github_id), ("Google", obj.google_id)) if uid
        ]
        return ", ".join(linked) or "—"

    @admin.display(description="API tokens", ordering="n_tokens")
    def token_count(self, obj: User) -> int:
        return obj.n_tokens

    @admin.action(description="Block selected users (revokes their tokens)", permissions=["change"])
    def block_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        blocked = 0
        for user in queryset.filter(blocked=False):
            try:
                user_block(
                    user=user,
                    actor=request.user,
                    audit=AuditContext.from_request(request, interface="admin"),
                )
            except AccountError as exc:
                self.message_user(request, f"{user.username}: {exc}", messages.ERROR)
            else:
                blocked += 1
        self.message_user(request, f"{blocked} user(s) blocked.")

    @admin.action(description="Unblock selected users", permissions=["change"])
    def unblock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.filter(blocked=True))
        for user in users:
            user_unblock(user=user, audit=AuditContext.from_request(request, interface="admin"))
        self.message_user(request, f"{len(users)} user(s) unblocked.")


class InvitationStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("valid", "valid"), ("used", "used"), ("expired", "expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == "used":
            return queryset.filter(is_used=True)
        if value == "expired":
            return queryset.filter(is_used=False, expires_at__lte=Now())
        if value == "valid":
            return queryset.filter(is_used=False, expires_at__gt=Now())
        return queryset


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("recipient_email", "role", "status", "expires_at", "created_by", "created_at")
    list_filter = (InvitationStatusFilter, "role")
    search_fields = ("recipient_email",)
    list_select_related = ("created_by", "used_by")
    ordering = ("-created_at",)
    # `token` (a hash) is deliberately absent: it is of no use to anyone reading the admin.
    fields = (
        "recipient_email",
        "role",
        "status",
        "expires_at",
        "created_by",
        "created_at",
        "used_by",
        "used_at",
    )
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: Invitation | None = None) -> bool:
        return False  # invitations are immutable: revoke (delete) and invite again

    @admin.display(description="Status")
    def status(self, obj: Invitation) -> str:
        colours = {"valid": "#2e7d32", "used": "#555", "expired": "#b71c1c"}
        return format_html('<b style="color:{}">{}</b>', colours[obj.status], obj.status)

    @sensitive_variables("link")
    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InvitationCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                invitation, link = invitation_create(
                    email=form.cleaned_data["recipient_email"],
                    role=form.cleaned_data["role"],
                    days=form.cleaned_data["days"],
                    created_by=request.user,
                    audit=AuditContext.from_request(request, interface="admin"),
                )
            except InvalidInput as exc:
                field = {"email": "recipient_email"}.get(next(iter(exc.fields), ""))
                form.add_error(field if field in form.fields else None, str(exc))
            else:
                self.log_addition(request, invitation, [{"added": {}}])
                # Rendered in this response only: the link is a credential and is not stored.
                return TemplateResponse(
                    request,
                    "accounts_app/invitation_created.html",
                    {
                        **self.admin_site.each_context(request),
                        "opts": self.opts,
                        "title": "Invitation created",
                        "invitation": invitation,
                        "link": link,
                    },
                )
        return TemplateResponse(
            request,
            "accounts_app/invitation_add.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": "Invite a user",
                "form": form,
                "add": True,
            },
            status=400 if form.errors else 200,
        )


class TokenExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "yes"), ("no", "no")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=Now())
        if self.value() == "no":
            return queryset.filter(expires_at__gt=Now())
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """All API tokens (ADMIN). People manage their own on the account page (/account/)."""

    list_display = ("label", "user", "created_at", "expires_at", "expired")
    list_filter = (TokenExpiredFilter, "created_at")
    search_fields = ("user__username", "user__email", "name")
    list_select_related = ("user",)
    ordering = ("-created_at",)
    fields = ("id", "name", "user", "created_at", "expires_at")  # never `token`
    readonly_fields = fields
    actions = ("revoke_tokens",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                expired_flag=Case(
                    When(expires_at__lte=Now(), then=Value(True)),
                    default=Value(False),
                    output_field=BooleanField(),
                )
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # issued on the account page or by `manage.py issuetoken`; shown once there

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        token_revoke(
            token_id=obj.pk,
            actor=request.user,
            audit=AuditContext.from_request(request, interface="admin"),
        )

    @admin.display(description="Token", ordering="name")
    def label(self, obj: ApiToken) -> str:
        return obj.name or f"{str(obj.pk)[:8]}…"

    @admin.display(description="Expired", boolean=True, ordering="expired_flag")
    def expired(self, obj: ApiToken) -> bool:
        return obj.expired_flag

    @admin.action(description="Revoke selected tokens", permissions=["delete"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(
            token_revoke(
                token_id=pk,
                actor=request.user,
                audit=AuditContext.from_request(request, interface="admin"),
            )
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{revoked} token(s) revoked.")
