"""Pipeline flows: syncing rows with the pipelines directory and the operator's on/off switch.

`pipelines_sync()` upserts one `Pipeline` row per discovered folder. It refreshes only what
discovery owns (has_requirements, requirements_hash, metadata, discovery_error,
discovery_warnings, is_missing, discovered_at, git_commit and, see below, enabled) and never
touches the run counters. A row whose folder is gone is marked `is_missing` and keeps its history.
`metadata` is the normalised spec (`PipelineSpec.to_dict()`), or `{}` while the file is broken:
a broken pipeline carries no half-trusted configuration, and `discovery_error` says why.
Warnings (unknown keys, ...) are stored in `discovery_warnings` and logged when they change.

`enabled` has two writers, so the rule is:
- the DB flag is the operator's switch (`pipeline_set_enabled`, from the admin or the API);
- discovery copies `enabled` from pipeline.json only when the FILE's value differs from the one
  it saw last time (kept in `metadata["enabled"]`), so a sync never undoes an operator's toggle,
  while editing the file still wins;
- a new pipeline starts with the file's value (True when the file is unreadable: it cannot run
  until fixed anyway); while a file is broken, its last known value is unknown, so the first
  readable value afterwards is applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit_app.context import AuditContext
from audit_app.services import audit_changes, audit_record
from fastflow_site.db import serialise
from pipelines_app import checkouts
from pipelines_app.discovery import DiscoveredPipeline, scan_pipelines
from pipelines_app.models import Pipeline

logger = logging.getLogger(__name__)

SYNCED_FIELDS = (
    "has_requirements",
    "requirements_hash",
    "metadata",
    "discovery_error",
    "discovery_warnings",
    "is_missing",
    "enabled",
)


@dataclass
class SyncReport:
    pipelines: list[DiscoveredPipeline] = field(default_factory=list)
    commit: str = ""  # the git commit scanned ("" without git sync)
    # True when a git sync switched the directory to another commit while this scan ran: the
    # scan was not applied (that sync applies its own).
    superseded: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # newly marked missing by this sync
    # Pipelines whose requirements.txt is new or changed: the engine warms their cache.
    requirements_changed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, str]:
        return {p.name: p.error for p in self.pipelines if p.error}

    @property
    def warnings(self) -> dict[str, list[str]]:
        return {p.name: p.warnings for p in self.pipelines if p.warnings}

    def summary(self) -> str:
        if self.superseded:
            return (
                f"not applied: the pipelines directory moved to a newer commit than "
                f"{self.commit[:12]} during the scan (that sync applies its own)"
            )
        parts = [f"{len(self.pipelines)} pipeline(s) found"]
        if self.commit:
            parts[0] += f" at commit {self.commit[:12]}"
        for label, names in (
            ("new", self.created),
            ("updated", self.updated),
            ("now missing", self.missing),
        ):
            if names:
                parts.append(f"{len(names)} {label}")
        if self.errors:
            parts.append(f"{len(self.errors)} with errors")
        return ", ".join(parts)


def _discovered_fields(found: DiscoveredPipeline) -> dict[str, Any]:
    return {
        "has_requirements": found.has_requirements,
        "requirements_hash": found.requirements_hash,
        "metadata": found.spec.to_dict() if found.spec is not None else {},
        "discovery_error": found.error,
        "discovery_warnings": list(found.warnings),
        "is_missing": False,
    }


def _enabled_after_sync(row: Pipeline, found: DiscoveredPipeline) -> bool:
    declared = found.declared_enabled
    last_seen = row.metadata.get("enabled") if row.metadata else None
    if declared is not None and declared != last_seen:
        return declared
    return row.enabled


def _log_changes(found: DiscoveredPipeline, row: Pipeline | None) -> None:
    if found.error and (row is None or row.discovery_error != found.error):
        logger.warning("pipeline %s cannot run: %s", found.name, found.error)
    if found.warnings and (row is None or row.discovery_warnings != found.warnings):
        for warning in found.warnings:
            logger.warning("pipeline %s: %s", found.name, warning)


def pipelines_sync(*, root: Path | None = None) -> SyncReport:
    """Upsert Pipeline rows from the pipelines directory (default settings.PIPELINES_DIR).

    The filesystem is read before the transaction opens, so no lock is held during I/O.
    Raises PipelinesDirError when the directory itself is unusable: nothing is marked missing
    because of a bad mount or setting.
    """
    scan = scan_pipelines(root)
    report = SyncReport(pipelines=scan.pipelines, skipped=scan.skipped, commit=scan.commit)
    now = timezone.now()
    seen = [found.name for found in scan.pipelines]

    with transaction.atomic():
        # Two syncs (the engine's, the admin's, a git sync's) apply one after the other, and a
        # scan of a checkout the directory no longer points to is dropped: rows always describe
        # one commit, the one runs start with (their `git_commit`).
        serialise("pipelines-sync")
        if root is None and scan.commit != checkouts.current_commit():
            report.superseded = True
            return report
        rows = {row.pipeline_name: row for row in Pipeline.objects.filter(pipeline_name__in=seen)}
        new_rows = []
        for found in scan.pipelines:
            row = rows.get(found.name)
            _log_changes(found, row)
            values = _discovered_fields(found)
            if row is None:
                declared = found.declared_enabled
                values["enabled"] = True if declared is None else declared
                new_rows.append(Pipeline(pipeline_name=found.name, discovered_at=now, **values))
                report.created.append(found.name)
                if found.requirements_hash:
                    report.requirements_changed.append(found.name)
                continue
            values["enabled"] = _enabled_after_sync(row, found)
            changed = {k: v for k, v in values.items() if getattr(row, k) != v}
            if "requirements_hash" in changed:
                # A warm-up of the old requirements says nothing about the new ones.
                changed.update(last_cache_warmup=None, cache_warmup_error="")
                if found.requirements_hash:
                    report.requirements_changed.append(found.name)
            if changed:
                Pipeline.objects.filter(pk=row.pk).update(**changed)
                report.updated.append(found.name)
        # Another process syncing at the same moment may have created the row first; its
        # values come from the same folder, so skipping the conflict loses nothing.
        Pipeline.objects.bulk_create(new_rows, ignore_conflicts=True)
        Pipeline.objects.filter(pipeline_name__in=seen).update(
            discovered_at=now, git_commit=scan.commit
        )

        gone = Pipeline.objects.filter(is_missing=False).exclude(pipeline_name__in=seen)
        report.missing = sorted(gone.values_list("pipeline_name", flat=True))
        if report.missing:
            Pipeline.objects.filter(pipeline_name__in=report.missing).update(is_missing=True)
            logger.warning("pipeline folder(s) gone, marked missing: %s", ", ".join(report.missing))
    return report


def pipeline_set_enabled(
    *, pipeline: Pipeline, enabled: bool, audit: AuditContext | None = None
) -> Pipeline:
    """The operator's switch; a later sync keeps it unless pipeline.json's `enabled` changes."""
    with transaction.atomic():
        before = Pipeline.objects.filter(pk=pipeline.pk).values_list("enabled", flat=True).first()
        updated = Pipeline.objects.filter(pk=pipeline.pk).update(enabled=enabled)
        if updated != 1:
            raise Pipeline.DoesNotExist(f"pipeline '{pipeline.pk}' no longer exists")
        if before != enabled:
            audit_record(
                audit=audit,
                action="pipeline.enable" if enabled else "pipeline.disable",
                target=pipeline,
                changes=audit_changes(before={"enabled": before}, after={"enabled": enabled}),
            )
    pipeline.enabled = enabled
    return pipeline
