"""Other encrypted values `rotatesecrets` re-encrypts, registered by the apps that own them
(notification target URLs, ...), so this app knows none of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name → rotate(audit=…) -> count; every function re-encrypts with crypto.rotate, all or nothing.
Rotation = Callable[..., int]
_rotations: dict[str, Rotation] = {}


def rotation_register(name: str, rotate: Rotation) -> None:
    _rotations[name] = rotate


def rotations() -> dict[str, Any]:
    return dict(_rotations)
