"""Git checkouts of the pipelines directory: one directory per commit, and a symlink.

With git sync (gitsync_app), every commit is checked out once into
`FASTFLOW_GIT_DIR/checkouts/<commit>/` and `FASTFLOW_PIPELINES_DIR` is a symlink to the current
one (or to a subdirectory of it). Switching commits replaces the symlink with one `rename()`, so
a reader that resolved the directory sees one whole commit, never a mix; a run resolves its
folder through the commit it started with (`root_at`), not through the symlink, so a sync during
the run does not move its files.

A pure filesystem module (no database, no git): discovery, the run engine and the git sync all
read the layout from here. Without git sync `current_link()` is None and nothing here matters.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# A full SHA-1 (40) or SHA-256 (64) object name: the only names a checkout directory has.
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class CheckoutError(Exception):
    """The pipelines directory cannot be switched (a message for people)."""


@dataclass(frozen=True)
class Link:
    commit: str
    subdir: str  # "" for the repository root


def checkouts_dir() -> Path:
    return Path(settings.FASTFLOW_GIT_DIR) / "checkouts"


def checkout_path(commit: str) -> Path:
    if not COMMIT_PATTERN.fullmatch(commit):
        raise ValueError(f"{commit!r} is not a full commit id")
    return checkouts_dir() / commit


def _real(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def link_of(path: Path) -> Link | None:
    """The checkout `path` lies in (a resolved path), or None if it is no checkout."""
    try:
        relative = _real(path).relative_to(_real(checkouts_dir()))
    except ValueError:
        return None
    if not relative.parts or not COMMIT_PATTERN.fullmatch(relative.parts[0]):
        return None
    return Link(commit=relative.parts[0], subdir="/".join(relative.parts[1:]))


def current_link() -> Link | None:
    """Where the pipelines directory points, if it is a symlink into the checkouts."""
    root = Path(settings.PIPELINES_DIR)
    if not root.is_symlink():
        return None
    return link_of(root)


def current_commit() -> str:
    link = current_link()
    return link.commit if link else ""


def root_at(commit: str) -> Path:
    """The pipelines directory as it is in `commit`'s checkout: the same subdirectory the
    symlink uses now (a subdirectory change applies to every run that starts after it)."""
    link = current_link()
    base = checkout_path(commit)
    return base / link.subdir if link and link.subdir else base


def switch_to(commit: str, subdir: str = "") -> bool:
    """Point the pipelines directory at `commit`'s checkout; False if it already does.

    The new symlink is made under a private name and renamed over the old one: readers see the
    old or the new checkout, never none. The first switch replaces an empty directory (there is
    nothing to read in it); a directory with content is refused rather than deleted.
    """
    target = checkout_path(commit) / subdir if subdir else checkout_path(commit)
    if not target.is_dir():
        raise CheckoutError(f"{target} does not exist or is not a directory")
    root = Path(settings.PIPELINES_DIR)
    if current_link() == Link(commit=commit, subdir=subdir):
        return False
    if root.is_symlink():
        pass  # ours or not, a symlink holds no data: replacing it loses nothing
    elif root.is_dir():
        if any(root.iterdir()):
            raise CheckoutError(
                f"FASTFLOW_PIPELINES_DIR ({root}) is a directory with content; git sync replaces "
                "it with a symlink to the checkout. Move its content away (or point "
                "FASTFLOW_PIPELINES_DIR at a new path) and sync again"
            )
        root.rmdir()
    elif root.exists():
        raise CheckoutError(f"FASTFLOW_PIPELINES_DIR ({root}) exists and is not a directory")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Relative: the link stays right where the web process or another engine mounts the
    # shared directories under a different prefix.
    relative = os.path.relpath(target, _real(root.parent))
    draft = root.with_name(f".{root.name}.{uuid.uuid4().hex}.tmp")
    os.symlink(relative, draft)
    try:
        os.replace(draft, root)
    except OSError as exc:
        draft.unlink(missing_ok=True)
        raise CheckoutError(f"cannot switch {root} to the new checkout: {exc}") from exc
    return True


def checkout_names() -> list[str]:
    """Every entry of the checkouts directory (complete checkouts and leftover drafts)."""
    try:
        return sorted(entry.name for entry in os.scandir(checkouts_dir()))
    except FileNotFoundError:
        return []


def draft_path(commit: str) -> Path:
    """Where a checkout is written before it is renamed into place (complete or absent)."""
    return checkouts_dir() / f".{commit}.{uuid.uuid4().hex}.draft"


def remove(name: str) -> None:
    """Delete one entry of the checkouts directory (a checkout or a draft)."""
    path = checkouts_dir() / name
    if path.parent != checkouts_dir() or name in {"", ".", ".."}:
        raise ValueError(f"{name!r} is not an entry of the checkouts directory")
    if path.is_dir() and not path.is_symlink():
        # A local run may have made directories read-only; the checkout is ours to delete.
        for folder, _dirs, _files in os.walk(path):
            os.chmod(folder, stat.S_IRWXU)
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
