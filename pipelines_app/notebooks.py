"""Checking a notebook pipeline's `main.ipynb` at discovery (the engine runs it cell by cell).

Read as plain JSON (nbformat 4): the engine does not need Jupyter installed to discover. What
is checked is what the runner relies on: a `cells` array, and per code cell an optional
`metadata.fastflow` object with `retries` (whole number >= 0) and `delay_seconds` (>= 0), which
override that cell's entry in pipeline.json's `cells`. Code cells are counted from 1 in
messages and the run log; `cells[0]` in pipeline.json is code cell 1 (markdown and raw cells
are not counted, as in the original).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines_app.errors import SpecError
from pipelines_app.spec import CELL_KEYS, PipelineSpec
from pipelines_app.spec_values import as_int, as_number, json_type

NOTEBOOK_FILE = "main.ipynb"


def notebook_problems(data: Any, spec: PipelineSpec, source: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a decoded main.ipynb of the pipeline described by `spec`."""
    errors: list[str] = []
    warnings: list[str] = []
    if not isinstance(data, Mapping) or not isinstance(data.get("cells"), list):
        return [f"{NOTEBOOK_FILE}: not a Jupyter notebook (no 'cells' array)"], []
    major = data.get("nbformat")
    if major != 4:
        errors.append(f"{NOTEBOOK_FILE}: nbformat {major!r} is not supported (expected 4)")
    code = 0
    for position, cell in enumerate(data["cells"], start=1):
        if not isinstance(cell, Mapping):
            errors.append(f"{NOTEBOOK_FILE}: cell {position}: expected an object")
            continue
        if cell.get("cell_type") != "code":
            continue
        code += 1
        _check_cell_options(cell, f"{NOTEBOOK_FILE}: code cell {code}", errors, warnings)
    if len(spec.cells) > code:
        warnings.append(
            f"{source}: key 'cells': {len(spec.cells)} entries but {NOTEBOOK_FILE} has {code} "
            "code cell(s); the extra entries are ignored"
        )
    return errors, warnings


def _check_cell_options(
    cell: Mapping[str, Any], where: str, errors: list[str], warnings: list[str]
) -> None:
    """A code cell's `metadata.fastflow` (absent is fine)."""
    metadata = cell.get("metadata")
    options = metadata.get("fastflow") if isinstance(metadata, Mapping) else None
    if options is None:
        return
    label = f"{where}: metadata.fastflow"
    if not isinstance(options, Mapping):
        errors.append(f"{label}: expected an object, got {json_type(options)}")
        return
    for key, value in options.items():
        if key not in CELL_KEYS:
            warnings.append(f"{label}.{key}: unknown key, ignored")
            continue
        try:
            as_int(value) if key == "retries" else as_number(value)
        except SpecError as exc:
            errors.append(f"{label}.{key}: {exc}")
