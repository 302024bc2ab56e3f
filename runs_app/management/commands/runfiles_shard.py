"""`manage.py runfiles_shard`: move existing runs' log and metrics files into the sharded
layout (`logs/<pipeline>/<shard>/`, `metrics/<pipeline>/<shard>/`). Safe to run while the web
process and the engine run, and to run again (runs_app/run_files.py says how)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs_app.run_files import run_files_shard


class Command(BaseCommand):
    help = "Move existing runs' log and metrics files into the sharded folders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would move; change nothing."
        )
        parser.add_argument(
            "--batch", type=int, default=1000, help="Runs read per query (default 1000)."
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1")
        report = run_files_shard(batch=options["batch"], dry_run=options["dry_run"])
        for problem in report.failed[:20]:
            self.stderr.write(problem)
        prefix = "would be: " if options["dry_run"] else ""
        self.stdout.write(prefix + report.summary())
        if report.failed:
            raise CommandError(f"{len(report.failed)} file(s) could not be moved (see above)")
