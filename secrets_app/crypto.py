"""Fernet encryption of secret values with key rotation (MultiFernet).

`FASTFLOW_ENCRYPTION_KEY` is a comma-separated list: the first key encrypts, every key decrypts.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A ciphertext that no configured key can decrypt."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FASTFLOW_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError("value cannot be decrypted with any configured key") from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the first (current) key."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError("value cannot be decrypted with any configured key") from exc
