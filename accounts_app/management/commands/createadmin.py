from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts_app.login_links import login_link_url
from accounts_app.models import User
from accounts_app.roles import Role
from audit_app.context import AuditContext
from audit_app.services import audit_record


class Command(BaseCommand):
    help = "Create (or promote) an ADMIN user and print a one-time login URL (valid 15 minutes)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, email: str, **options):
        username = username.strip()
        if not username:
            raise CommandError("username must not be empty")
        max_length = User._meta.get_field("username").max_length
        if len(username) > max_length:
            raise CommandError(f"username must be at most {max_length} characters")
        email = email.strip()
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email: {email!r} is not a valid e-mail address") from None
        already_admin = False
        previous_role = None
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": email, "role": Role.ADMIN}
            )
            if created:
                user.set_unusable_password()
            else:
                if user.blocked:
                    raise CommandError(f"user '{username}' is blocked; unblock it first")
                already_admin = user.role == Role.ADMIN
                previous_role = user.role
                user.role = Role.ADMIN
                if email:
                    user.email = email
            user.save()
            if not already_admin:
                audit_record(
                    audit=AuditContext.command("createadmin"),
                    action="user.create" if created else "user.role",
                    target=user,
                    changes={
                        "role": {"old": None if created else previous_role, "new": Role.ADMIN}
                    },
                )
        verb = "Created" if created else ("Found" if already_admin else "Promoted")
        self.stdout.write(f"{verb} ADMIN user '{user.username}'.")
        self.stdout.write(f"One-time login link (15 minutes): {login_link_url(user=user)}")
