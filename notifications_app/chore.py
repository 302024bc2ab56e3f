"""The engine's notification thread: every engine sends what is due (claims keep two engines
from sending one delivery); the scheduler leader also runs `watch` (the runs app's check of
RUNNING runs). It runs in its own thread, so a slow or dead target never delays claiming or
finishing runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from notifications_app.services import notifications_due, notifications_send_due

logger = logging.getLogger(__name__)

WATCH_SECONDS = 15.0
# At most this many batches per tick, so a large backlog does not starve the watch.
MAX_BATCHES = 10


class NotificationChore:
    def __init__(
        self,
        *,
        engine_id: str,
        is_leader: Callable[[], bool],
        watch: Callable[[], object] | None = None,
    ) -> None:
        self.engine_id = engine_id
        self.is_leader = is_leader
        self.watch = watch
        self._watch_due = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if self.watch is not None and self.is_leader() and now >= self._watch_due:
            self._watch_due = now + WATCH_SECONDS
            try:
                self.watch()
            except Exception:  # noqa: BLE001 - sending must go on
                logger.exception("notification watch over running runs failed")
        for _ in range(MAX_BATCHES):
            if not notifications_due():
                return
            notifications_send_due(engine_id=self.engine_id)
