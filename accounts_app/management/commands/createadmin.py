from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts_app.login_links import login_link_url
from accounts_app.models import Role, User


class Command(BaseCommand):
    help = "Create (or promote) an ADMIN user and print a one-time login URL (valid 15 minutes)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")

    def handle(self, *args, username: str, email: str, **options):
        username = username.strip()
        if not username:
            raise CommandError("username must not be empty")
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": email, "role": Role.ADMIN}
            )
            if created:
                user.set_unusable_password()
            else:
                if user.blocked:
                    raise CommandError(f"user '{username}' is blocked; unblock it first")
                user.role = Role.ADMIN
                if email:
                    user.email = email
            user.save()
        verb = "Created" if created else "Promoted"
        self.stdout.write(f"{verb} ADMIN user '{user.username}'.")
        self.stdout.write(f"One-time login link (15 minutes): {login_link_url(user=user)}")
