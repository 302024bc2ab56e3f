from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from pipelines_app.spec import PipelineSpec


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
        name = self.pipeline_name
        # Names come from directory listings, but a row is still never allowed to point outside.
        if not name or "/" in name or "\\" in name or "\x00" in name or name in {".", ".."}:
            raise ValueError(f"pipeline name {name!r} cannot name a folder")
        return Path(settings.PIPELINES_DIR) / name

    @property
    def state(self) -> str:
        """ok, disabled, error or missing: the one-word summary the admin and CLI show."""
        if self.is_missing:
            return "missing"
        if self.discovery_error:
            return "error"
        return "ok" if self.enabled else "disabled"

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
