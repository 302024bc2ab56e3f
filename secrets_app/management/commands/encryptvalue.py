"""`manage.py encryptvalue`: encrypt a value for pipeline.json's `encrypted_env`.

The value is read from a hidden prompt (or standard input when it is not a terminal), never
from the command line, where it would land in the shell history and the process list.
"""

from __future__ import annotations

import getpass
import json
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from secrets_app.services import encrypted_value_create


class Command(BaseCommand):
    help = (
        "Encrypt a value with the current FASTFLOW_ENCRYPTION_KEY for pipeline.json's "
        "encrypted_env. Reads the value from a hidden prompt, or from standard input (a "
        "trailing newline is removed) when that is not a terminal."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--name",
            default="",
            help='print a line to paste into encrypted_env: "NAME": "<encrypted value>"',
        )

    def handle(self, *args, **options) -> None:
        stdin = sys.stdin
        if stdin is not None and stdin.isatty():
            value = getpass.getpass("Value to encrypt (not shown): ")
        else:
            value = (stdin.read() if stdin is not None else "").removesuffix("\n")
            value = value.removesuffix("\r")
        name = options["name"]
        try:
            token = encrypted_value_create(value=value, name=name)
        except ValidationError as exc:
            problems = "; ".join(m for messages in exc.message_dict.values() for m in messages)
            raise CommandError(problems) from None
        self.stdout.write(f"{json.dumps(name)}: {json.dumps(token)}" if name else token)
