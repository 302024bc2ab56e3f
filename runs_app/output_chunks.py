"""A live run's log and metrics in the database (`RunOutputChunk`), for FASTFLOW_RUN_STORAGE=s3:
the engine appends what its files gained since the last copy, the web process reads them by
byte offset, and at the end they become one object in the store (`run_output.py`).

The chunks of one stream are contiguous: each starts where the previous ended, so a byte offset
means the same in the chunks and in the archived object. A chunk holds whole lines only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Length

from runs_app.models import PipelineRun, RunOutputChunk

# What one row holds at most; a copy of more is split at line ends.
CHUNK_MAX_BYTES = 256 * 1024


def chunks_end(*, run_id: object, stream: str) -> int:
    """The offset just after the last chunk (0 when there is none)."""
    last = (
        RunOutputChunk.objects.filter(run_id=run_id, stream=stream)
        .annotate(size=Length("data"))
        .order_by("-offset")
        .values_list("offset", "size")
        .first()
    )
    return last[0] + last[1] if last else 0


def _pieces(data: bytes) -> Iterator[bytes]:
    """`data` in pieces of at most CHUNK_MAX_BYTES, cut after a newline where there is one."""
    while data:
        if len(data) <= CHUNK_MAX_BYTES:
            yield data
            return
        cut = data.rfind(b"\n", 0, CHUNK_MAX_BYTES) + 1 or CHUNK_MAX_BYTES
        yield data[:cut]
        data = data[cut:]


def chunks_append(
    *, run_id: object, stream: str, offset: int, data: bytes, engine_id: str | None = None
) -> bool:
    """Store `data` as the bytes at `offset`; False when another writer already stored
    something there, or with `engine_id` when that engine no longer owns the run (another took
    it over: the new owner's copy continues from what is stored). All pieces or none.

    The ownership check locks the run's row (PostgreSQL; SQLite's transactions are IMMEDIATE,
    so serialised anyway): a take-over waits for an append under way, and the new owner's
    restore (`output_prepare`) reads it."""
    rows = []
    for piece in _pieces(data):
        rows.append(RunOutputChunk(run_id=run_id, stream=stream, offset=offset, data=piece))
        offset += len(piece)
    if not rows:
        return True
    try:
        with transaction.atomic():
            if engine_id is not None and not _still_owned(run_id, engine_id):
                return False
            RunOutputChunk.objects.bulk_create(rows)
    except IntegrityError:
        return False
    return True


def _still_owned(run_id: object, engine_id: str) -> bool:
    owner = (
        PipelineRun.objects.select_for_update()
        .filter(id=run_id)
        .values_list("engine_id", flat=True)
        .first()
    )
    return owner == engine_id


def chunks_append_at_end(*, run_id: object, stream: str, data: bytes, tries: int = 5) -> bool:
    """Append after whatever is there (engine notes after the end of a run)."""
    for _ in range(tries):
        offset = chunks_end(run_id=run_id, stream=stream)
        if chunks_append(run_id=run_id, stream=stream, offset=offset, data=data):
            return True
    return False


def chunks_read(*, run_id: object, stream: str, offset: int, limit: int = -1) -> bytes:
    """The bytes from `offset` (at most `limit`, all with -1) of the chunks stored so far."""
    rows = (
        RunOutputChunk.objects.filter(run_id=run_id, stream=stream)
        .annotate(chunk_end=F("offset") + Length("data"))
        .filter(chunk_end__gt=offset)
        .order_by("offset")
        .values_list("offset", "data")
    )
    parts: list[bytes] = []
    size = 0
    for start, data in rows.iterator(chunk_size=16):
        data = bytes(data)[max(offset - start, 0) :]
        parts.append(data)
        size += len(data)
        if 0 <= limit <= size:
            break
    joined = b"".join(parts)
    return joined if limit < 0 else joined[:limit]


def chunks_copy(*, run_id: object, stream: str, to: IO[bytes]) -> int:
    """Write all chunks of the stream to `to`, in order; the bytes written."""
    written = 0
    rows = RunOutputChunk.objects.filter(run_id=run_id, stream=stream).order_by("offset")
    for data in rows.values_list("data", flat=True).iterator(chunk_size=16):
        to.write(bytes(data))
        written += len(data)
    return written


def chunks_exist(*, run_id: object) -> bool:
    return RunOutputChunk.objects.filter(run_id=run_id).exists()


def chunks_delete(*, run_id: object) -> int:
    deleted, _ = RunOutputChunk.objects.filter(run_id=run_id).delete()
    return deleted
