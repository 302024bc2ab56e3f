from __future__ import annotations

from django.contrib.auth.backends import BaseBackend


class RoleBackend(BaseBackend):
    """Authenticates nobody (there are no passwords); permissions come from the role on User."""

    def get_user(self, user_id):  # noqa: ANN001 - Django's signature
        from accounts_app.models import User

        try:
            user = User.objects.get(pk=user_id)
        except (User.DoesNotExist, ValueError):
            return None
        return user if not user.blocked else None
