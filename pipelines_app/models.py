from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Subquery

from pipelines_app import checkouts
from pipelines_app.spec import PipelineSpec

# What stands in for a credential in shown metadata (the same mask as secrets in run logs).
REDACTED = "***"


class PipelineState(models.TextChoices):
    """The one-word summary of a pipeline, the same in the admin, the API and the CLI."""

    READY = "ready"
    DISABLED = "disabled"
    BROKEN = "broken"  # pipeline.json (or the folder) has a configuration error
    MISSING = "missing"  # the folder is gone from the pipelines directory


class PipelineQuerySet(models.QuerySet):
    def with_last_run(self) -> PipelineQuerySet:
        """Annotate `last_run_status` and `last_run_at` of each pipeline's latest run: one
        correlated subquery each, on the (pipeline_name, queued_at DESC) index, so a list of
        pipelines stays one query."""
        # The run model through the reverse relation it declares: this app imports no run code.
        runs = self.model._meta.get_field("runs").related_model
        last = runs.objects.filter(pipeline=OuterRef("pk")).order_by("-queued_at")
        return self.annotate(
            last_run_status=Subquery(last.values("status")[:1]),
            last_run_at=Subquery(last.values("queued_at")[:1]),
        )

    def in_state(self, state: str) -> PipelineQuerySet:
        """The pipelines whose `Pipeline.state` is `state` (a PipelineState value)."""
        present = self.filter(is_missing=False)
        match state:
            case PipelineState.READY:
                return present.filter(discovery_error="", enabled=True)
            case PipelineState.DISABLED:
                return present.filter(discovery_error="", enabled=False)
            case PipelineState.BROKEN:
                return present.exclude(discovery_error="")
            case PipelineState.MISSING:
                return self.filter(is_missing=True)
        raise ValueError(f"unknown pipeline state {state!r}")


class Pipeline(models.Model):
    """A discovered pipeline folder; discovery upserts it, runs update its counters."""

    pipeline_name = models.CharField(primary_key=True, max_length=255)
    has_requirements = models.BooleanField(default=False)
    last_cache_warmup = models.DateTimeField(null=True, blank=True)
    total_runs = models.IntegerField(default=0)
    successful_runs = models.IntegerField(default=0)
    failed_runs = models.IntegerField(default=0)
    enabled = models.BooleanField(default=True)
    metadata = models.JSONField(default=dict, blank=True)
    webhook_runs = models.IntegerField(default=0)
    # Additions (docs/schema.md says why).
    discovery_error = models.TextField(blank=True, default="")
    is_missing = models.BooleanField(default=False)
    requirements_hash = models.CharField(max_length=64, blank=True, default="")
    cache_warmup_error = models.TextField(blank=True, default="")
    discovered_at = models.DateTimeField(null=True, blank=True)
    discovery_warnings = models.JSONField(default=list, blank=True)
    git_commit = models.CharField(max_length=64, blank=True, default="")

    objects = PipelineQuerySet.as_manager()

    class Meta:
        db_table = "pipelines"
        ordering = ["pipeline_name"]

    def __str__(self) -> str:
        return self.pipeline_name

    @property
    def spec(self) -> PipelineSpec:
        """The parsed metadata, cached until `metadata` is replaced (e.g. refresh_from_db)."""
        cached = self.__dict__.get("_spec_cache")
        if cached is None or cached[0] is not self.metadata:
            cached = (self.metadata, PipelineSpec.from_dict(self.metadata))
            self.__dict__["_spec_cache"] = cached
        return cached[1]

    @property
    def folder(self) -> Path:
        """The folder in the pipelines directory (with git sync: in the current checkout)."""
        return self.folder_at("")

    def folder_at(self, commit: str) -> Path:
        """The folder in `commit`'s checkout (a run's own, fixed when it started); "" is the
        pipelines directory as it is now."""
        name = self.pipeline_name
        # Names come from directory listings, but a row is still never allowed to point outside.
        if not name or "/" in name or "\\" in name or "\x00" in name or name in {".", ".."}:
            raise ValueError(f"pipeline name {name!r} cannot name a folder")
        root = checkouts.root_at(commit) if commit else Path(settings.PIPELINES_DIR)
        return root / name

    @property
    def state(self) -> PipelineState:
        """ready, disabled, broken or missing (`PipelineQuerySet.in_state` filters by it)."""
        if self.is_missing:
            return PipelineState.MISSING
        if self.discovery_error:
            return PipelineState.BROKEN
        return PipelineState.READY if self.enabled else PipelineState.DISABLED

    def metadata_redacted(self, *, reveal_credentials: bool = False) -> dict[str, Any]:
        """The normalised pipeline.json for display, with credentials replaced by `***`.

        Webhook keys are credentials (the original Fast-Flow leaked them to every viewer).
        `encrypted_env` values are ciphertext, hidden as well: of no use to a reader, and of use
        to someone who later obtains the key. With `reveal_credentials` (the API, for admins)
        the metadata is returned as stored.
        """
        data = copy.deepcopy(self.metadata or {})
        return data if reveal_credentials else _redacted(data)

    @property
    def is_runnable(self) -> bool:
        return self.enabled and not self.is_missing and not self.discovery_error

    @property
    def not_runnable_reason(self) -> str:
        if self.is_missing:
            return f"pipeline '{self.pipeline_name}' is missing from the pipelines directory"
        if self.discovery_error:
            return (
                f"pipeline '{self.pipeline_name}' has a configuration error: {self.discovery_error}"
            )
        if not self.enabled:
            return f"pipeline '{self.pipeline_name}' is disabled"
        return ""

    @property
    def description(self) -> str:
        return str(self.metadata.get("description") or "")

    @property
    def tags(self) -> list[str]:
        return list(self.metadata.get("tags") or [])


def _redacted(data: Any, key: str = "") -> Any:
    if key == "webhook_key" and data:
        return REDACTED
    if key == "encrypted_env" and isinstance(data, dict):
        return dict.fromkeys(data, REDACTED)
    if isinstance(data, dict):
        return {k: _redacted(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [_redacted(item) for item in data]
    return data
