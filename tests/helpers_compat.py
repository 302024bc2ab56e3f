"""Helpers for the tests of the original's pipeline features (notebooks, routes, daemons):
notebooks written as plain nbformat-4 JSON, and an executor fixture for both executors."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from runs_app.engine.executors import get_executor
from tests.helpers_executor import HOST_CA_BUNDLE, use_runner_image


def _cell_id() -> str:
    return uuid.uuid4().hex[:12]


def code_cell(source: str, **fastflow: Any) -> dict[str, Any]:
    metadata = {"fastflow": fastflow} if fastflow else {}
    return {
        "id": _cell_id(),
        "cell_type": "code",
        "metadata": metadata,
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def markdown_cell(text: str) -> dict[str, Any]:
    return {"id": _cell_id(), "cell_type": "markdown", "metadata": {}, "source": text}


def notebook_json(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "cells": cells,
    }


def write_notebook(
    root: Path,
    name: str,
    cells: list[dict[str, Any]],
    *,
    pipeline_json: dict[str, Any] | None = None,
    requirements: str | None = None,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.ipynb").write_text(json.dumps(notebook_json(cells), indent=1))
    (folder / "pipeline.json").write_text(json.dumps({"type": "notebook", **(pipeline_json or {})}))
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def runner_network() -> str:
    recorded = Path("/run/fastflow-runner-network")  # written by scripts/start-docker.sh
    return recorded.read_text().strip() if recorded.is_file() else "bridge"


def use_executor(request: pytest.FixtureRequest, settings, name: str):
    """Configure `settings` for a real executor that may reach the package index (notebook
    runs install nbclient and ipykernel through the shared uv cache)."""
    settings.FASTFLOW_EXECUTOR = name
    settings.FASTFLOW_RUNNER_CA_BUNDLE = HOST_CA_BUNDLE if Path(HOST_CA_BUNDLE).is_file() else ""
    settings.FASTFLOW_CANCEL_GRACE_SECONDS = 1
    if name == "docker":
        request.getfixturevalue("docker_engine")
        use_runner_image(settings)
        settings.FASTFLOW_RUNNER_NETWORK = runner_network()
    return get_executor()


BOTH_EXECUTORS = ["local", pytest.param("docker", marks=pytest.mark.docker)]
