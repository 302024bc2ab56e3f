from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline, PipelineState
from pipelines_app.services import SyncReport, pipelines_sync

# The state goes last: it may be a long error message, and it is the one column not padded.
HEADERS = ("PIPELINE", "REQUIREMENTS", "SCHEDULES", "STATE")


def state_cell(pipeline: Pipeline) -> str:
    """The state word; a broken pipeline's error follows it, since that is what to fix."""
    if pipeline.state == PipelineState.BROKEN:
        return f"{pipeline.state}: {pipeline.discovery_error}"
    return str(pipeline.state)


def table_lines(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in rows
    ]


class Command(BaseCommand):
    help = "Discover pipelines in the pipelines directory and print their state."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Fail when any pipeline has a configuration error (for a pipelines repo's CI).",
        )

    def handle(self, *args: object, strict: bool = False, **options: object) -> None:
        try:
            report = pipelines_sync()
        except PipelinesDirError as exc:
            raise CommandError(str(exc)) from exc
        self.print_report(report)
        if strict and report.errors:
            raise CommandError(f"{len(report.errors)} pipeline(s) have configuration errors")

    def print_report(self, report: SyncReport) -> None:
        rows = [HEADERS]
        for pipeline in Pipeline.objects.all():
            schedules = "-" if pipeline.discovery_error else str(pipeline.spec.schedule_count)
            requirements = "yes" if pipeline.has_requirements else "no"
            rows.append((pipeline.pipeline_name, requirements, schedules, state_cell(pipeline)))
        for line in table_lines(rows):
            self.stdout.write(line)
        for name, warnings in sorted(report.warnings.items()):
            for warning in warnings:
                self.stdout.write(self.style.WARNING(f"warning: {name}: {warning}"))
        for name, reason in report.skipped:
            self.stdout.write(f"skipped: {name}: {reason}")
        self.stdout.write(report.summary())
