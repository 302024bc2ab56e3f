"""The object store holding finished runs' logs and metrics (FASTFLOW_RUN_STORAGE=s3), through
Django's storage API: `settings.STORAGES["fastflow_runs"]`, the django-storages S3 backend.

Object names are the run's file paths relative to the data dir
(`logs/<pipeline>/<shard>/<run id>.log`, `metrics/…/<run id>.jsonl`), below FASTFLOW_S3_PREFIX.
Reads are ranged: a reader tailing a 50 MB log asks for the bytes it needs, not the object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

from runs_app.errors import RunStorageUnavailable

logger = logging.getLogger(__name__)


@contextmanager
def _answering(what: str) -> Iterator[None]:
    """A store that fails (unreachable, refused credentials) is RunStorageUnavailable (503 for
    the interfaces), never a bare boto error; a missing object stays FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as exc:  # botocore's errors have no common base with the network's
        if _is_not_found(exc):
            raise FileNotFoundError(what) from exc
        logger.warning("the run storage failed on %s: %s", what, exc)
        raise RunStorageUnavailable(
            f"the run storage (FASTFLOW_S3_BUCKET) did not answer reading {what}: "
            f"{exc.__class__.__name__}; try again shortly",
            headers={"Retry-After": "5"},
        ) from exc


def object_store_enabled() -> bool:
    return settings.FASTFLOW_RUN_STORAGE == "s3"


def object_storage() -> Storage:
    return storages[settings.RUN_OUTPUT_STORAGE]


def object_save(*, name: str, content: IO[bytes]) -> str:
    """Store `content` under `name` (replacing an object of that name); the name stored."""
    return object_storage().save(name, File(content, name=name))


def object_read(*, name: str, offset: int = 0, limit: int = -1) -> bytes:
    """Up to `limit` bytes (all with -1) from `offset`; nothing past the end. Raises
    FileNotFoundError when there is no such object, RunStorageUnavailable when the store fails."""
    with _answering(name):
        return _read(name, offset, limit)


def _read(name: str, offset: int, limit: int) -> bytes:
    with object_storage().open(name, "rb") as fh:
        obj = getattr(fh, "obj", None)  # S3: the boto3 object, loaded (HEAD) by open()
        if obj is None:  # any other Django storage
            fh.seek(offset)
            return fh.read(limit)
        size = obj.content_length
        if offset >= size or limit == 0:
            return b""
        end = size if limit < 0 else min(offset + limit, size)
        return obj.get(Range=f"bytes={offset}-{end - 1}")["Body"].read()


def object_size(*, name: str) -> int | None:
    """The object's size, or None when it does not exist."""
    try:
        with _answering(name):
            return object_storage().size(name)
    except FileNotFoundError:
        return None


def object_delete(*, name: str) -> int:
    """Delete the object; its size in bytes (0 when it did not exist). A failure is logged
    and counts as nothing deleted (the orphan is left, never the row's data lost)."""
    try:
        size = object_size(name=name)
        if size is None:
            return 0
        object_storage().delete(name)
    except Exception as exc:  # noqa: BLE001 - the store is remote; retention goes on
        logger.warning("cannot delete object %s from the run storage: %s", name, exc)
        return 0
    return size


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return status == 404 or (response.get("Error") or {}).get("Code") in {"404", "NoSuchKey"}
