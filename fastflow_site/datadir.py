"""Files and folders in the data dir are private to the user Fast-Flow runs as: folders 0700,
files 0600, whatever the process umask. The data dir holds the SQLite database (users, token
hashes, encrypted secrets), the development keys, and run logs that may show what a pipeline
printed; another local user has no business reading any of it.

Things an older version created with looser modes are tightened when they are next used, as
long as they belong to this user (a folder someone else owns is left alone, and the error, if
any, comes from whatever then fails to use it).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def tighten(path: Path | int, mode: int) -> None:
    """chmod `path` (or an open fd) to `mode` if it is ours and looser than that."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if info.st_uid == os.geteuid() and info.st_mode & 0o777 & ~mode:
        with contextlib.suppress(PermissionError):
            os.chmod(path, mode)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700 folders; tighten it if it already exists."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=PRIVATE_DIR)
        tighten(folder, PRIVATE_DIR)  # mkdir's mode is subject to the umask
    tighten(path, PRIVATE_DIR)
    return path


def private_open(path: Path, mode: str = "ab", **kwargs: Any) -> IO:
    """`open(path, mode)` for appending or writing, creating the file 0600 (and its folder
    0700); an existing file of ours is tightened."""
    path = Path(path)
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = os.open(path, flags, PRIVATE_FILE)
    tighten(fd, PRIVATE_FILE)
    return os.fdopen(fd, mode, **kwargs)


def private_sqlite_files(database: Path) -> None:
    """The SQLite database and its WAL and shared-memory files: 0600. SQLite creates the WAL
    and SHM files with the database file's mode, so once the database is 0600 they follow."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        tighten(Path(f"{database}{suffix}"), PRIVATE_FILE)
