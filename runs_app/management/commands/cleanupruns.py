"""`manage.py cleanupruns [--dry-run]`: apply retention now (the engine's leader also does it
every FASTFLOW_RETENTION_INTERVAL_SECONDS)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from audit_app.context import AuditContext
from pipelines_app.models import Pipeline
from runs_app.retention import retention_policy, runs_retention_apply


def _size(value: int) -> str:
    return f"{value / (1024 * 1024):.1f} MiB"


class Command(BaseCommand):
    help = "Delete finished runs beyond their retention, with their files; sweep orphan files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be deleted and delete nothing.",
        )

    def handle(self, *args: object, **options: object) -> None:
        dry_run = bool(options["dry_run"])
        if options["verbosity"] >= 1:
            for pipeline in Pipeline.objects.order_by("pipeline_name"):
                policy = retention_policy(pipeline=pipeline)
                self.stdout.write(f"{pipeline.pipeline_name}: {policy.describe()}")
        report = runs_retention_apply(dry_run=dry_run, audit=AuditContext.command("cleanupruns"))
        verb = "would delete" if dry_run else "deleted"
        for name, count in sorted(report.runs.items()):
            self.stdout.write(f"{name}: {verb} {count} run(s)")
        files = "" if dry_run else f" and {report.files} file(s), {_size(report.bytes)}"
        self.stdout.write(
            f"{verb} {report.total_runs} run(s){files}; "
            f"orphaned files: {report.orphan_files} ({_size(report.orphan_bytes)})"
        )
