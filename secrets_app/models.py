from __future__ import annotations

from django.db import models


class Secret(models.Model):
    """A global secret (Fernet-encrypted at rest) or a plain parameter.

    `value` holds ciphertext when `is_parameter` is false. Read and write it through
    `secrets_app.services` (`secret_set`, `secret_reveal`), never directly.
    """

    key = models.CharField(primary_key=True, max_length=255)
    value = models.TextField()
    is_parameter = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "secrets"
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
