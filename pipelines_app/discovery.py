"""Scan the pipelines directory: a pure filesystem read, no database.

Rules:
- every direct subfolder that does not start with "." and holds a `main.py` (a script) or a
  `main.ipynb` (a notebook, `"type": "notebook"`) is a pipeline named after the folder;
  anything else is skipped (and listed in `Scan.skipped` with the reason). A folder whose entry
  file does not match its `type`, or that holds both, is a pipeline with a specific error;
- metadata comes from `pipeline.json`, else `<folder>.json`; neither means all defaults;
- a folder name must be a safe identifier (`is_safe_name`), otherwise the pipeline is recorded
  with an error and cannot run;
- nothing outside the pipelines directory is read. A folder that is a symlink leaving the
  directory is recorded with an error without looking inside it (refusing it loudly beats
  hiding it); a `main.py`, metadata file or `requirements.txt` that resolves outside makes the
  pipeline an error and is not opened. Symlinks that stay inside the directory are followed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from pipelines_app import checkouts
from pipelines_app.checks import spec_check_errors, spec_time_warnings
from pipelines_app.errors import PipelinesDirError, SpecError
from pipelines_app.notebooks import NOTEBOOK_FILE, notebook_problems
from pipelines_app.spec import PipelineSpec, ResourceMaxima, parse_pipeline_json
from pipelines_app.spec_values import is_safe_name

MAX_FILE_BYTES = 1024 * 1024
# A notebook carries its outputs (images), so it may be larger than a script.
MAX_NOTEBOOK_BYTES = 16 * 1024 * 1024
REQUIREMENTS_FILE = "requirements.txt"
ENTRY_FILE = "main.py"


@dataclass(frozen=True)
class DiscoveredPipeline:
    name: str
    path: Path
    has_requirements: bool = False
    requirements_hash: str = ""  # sha256 of requirements.txt, "" without one
    spec: PipelineSpec | None = None  # None when `error` is set
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    metadata_file: str = ""  # "pipeline.json", "<folder>.json" or "" (defaults)
    # `enabled` as the file states it, even when another key is broken; None if unreadable.
    declared_enabled: bool | None = None


@dataclass(frozen=True)
class Scan:
    pipelines: list[DiscoveredPipeline]
    skipped: list[tuple[str, str]]  # (folder name, why it is not a pipeline)
    # The git commit whose checkout was scanned ("" without git sync): the directory is
    # resolved once, so one scan reads one commit even while a sync switches to the next.
    commit: str = ""


class _Unreadable(Exception):
    pass


def resource_maxima() -> ResourceMaxima:
    """The installation's caps on what a pipeline.json may ask for (settings)."""
    return ResourceMaxima(
        {
            "mem_hard_limit": (settings.FASTFLOW_RUN_MEM_MAX, "FASTFLOW_RUN_MEM_MAX"),
            "cpu_hard_limit": (settings.FASTFLOW_RUN_CPU_MAX, "FASTFLOW_RUN_CPU_MAX"),
            "pids_limit": (
                settings.FASTFLOW_RUNNER_PIDS_LIMIT_MAX,
                "FASTFLOW_RUNNER_PIDS_LIMIT_MAX",
            ),
            "tmp_size": (settings.FASTFLOW_RUNNER_TMPFS_SIZE_MAX, "FASTFLOW_RUNNER_TMPFS_SIZE_MAX"),
        }
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _contained_file(folder: Path, filename: str, root: Path) -> Path | None:
    """The resolved file, None if absent; raises _Unreadable when it must not be read."""
    candidate = folder / filename
    if not candidate.exists() and not candidate.is_symlink():
        return None
    real = candidate.resolve()
    if not _inside(real, root):
        raise _Unreadable(f"{filename} is a symlink pointing outside the pipelines directory")
    if not real.is_file():
        raise _Unreadable(f"{filename} is not a regular file")
    return real


def _read_bytes(path: Path, label: str, limit: int = MAX_FILE_BYTES) -> bytes:
    # O_NOFOLLOW: the path was resolved and checked; a symlink swapped in since is refused.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise _Unreadable(f"{label}: cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise _Unreadable(f"{label}: larger than {limit // 1024} KiB")
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise SpecError(f"key '{key}' appears more than once")
        data[key] = value
    return data


def _reject_constant(name: str) -> Any:
    raise SpecError(f"{name} is not valid JSON")


def load_json(path: Path, label: str, limit: int = MAX_FILE_BYTES) -> Any:
    raw = _read_bytes(path, label, limit)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Unreadable(f"{label}: not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as exc:
        raise _Unreadable(
            f"{label}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except SpecError as exc:
        raise _Unreadable(f"{label}: invalid JSON: {exc}") from None
    except RecursionError:
        # Deeper than the decoder's recursion limit: not a ValueError, it would escape the sync.
        raise _Unreadable(f"{label}: invalid JSON: nested too deeply") from None


def _display_name(name: str) -> str:
    """Folder names that are not valid UTF-8 still need a storable, readable name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return name


def _metadata_path(folder: Path, name: str, root: Path) -> tuple[Path | None, str, list[str]]:
    warnings: list[str] = []
    path = _contained_file(folder, "pipeline.json", root)
    if path is not None:
        if (folder / f"{name}.json").exists():
            warnings.append(f"{name}.json is ignored because pipeline.json exists")
        return path, "pipeline.json", warnings
    path = _contained_file(folder, f"{name}.json", root)
    return path, (f"{name}.json" if path else ""), warnings


def _present(folder: Path, filename: str, root: Path, errors: list[str]) -> Path | None | bool:
    """The checked file, None if absent, True if present but refused (the error is added)."""
    try:
        return _contained_file(folder, filename, root)
    except _Unreadable as exc:
        errors.append(str(exc))
        return True


def _entry_errors(spec_type: str | None, script: object, notebook: object) -> list[str]:
    """Whether the entry files match the declared type (None: the type is unknown)."""
    if script and notebook:
        return [
            f"both {ENTRY_FILE} and {NOTEBOOK_FILE} exist: keep one entry point "
            f'("type": "script" runs {ENTRY_FILE}, "type": "notebook" runs {NOTEBOOK_FILE})'
        ]
    if spec_type == "notebook" and not notebook:
        return [f'"type" is "notebook" but {NOTEBOOK_FILE} is missing (found {ENTRY_FILE})']
    if spec_type == "script" and not script:
        return [
            f'{NOTEBOOK_FILE} found but no {ENTRY_FILE}: set "type": "notebook" in '
            "pipeline.json to run the notebook"
        ]
    return []


def inspect_folder(folder: Path, root: Path) -> DiscoveredPipeline | None:
    """One pipeline folder (already known to lie inside `root`); None if it has no entry file
    (neither main.py nor main.ipynb)."""
    name = _display_name(folder.name)
    errors: list[str] = []
    script = _present(folder, ENTRY_FILE, root, errors)
    notebook = _present(folder, NOTEBOOK_FILE, root, errors)
    if script is None and notebook is None:
        return None
    if not is_safe_name(folder.name):
        errors.append(
            f"folder name {name!r} is not a safe identifier (letters, digits, '_', '.', '-'; "
            "starting with a letter or digit; at most 100 characters; no '..')"
        )

    spec: PipelineSpec | None = None
    warnings: list[str] = []
    declared: bool | None = None
    metadata_file = ""
    try:
        path, metadata_file, warnings = _metadata_path(folder, folder.name, root)
        data = load_json(path, metadata_file) if path else {}
        if isinstance(data, dict):
            raw_enabled = data.get("enabled", True)
            declared = raw_enabled if isinstance(raw_enabled, bool) else None
        result = parse_pipeline_json(
            data, source=metadata_file or "pipeline.json", maxima=resource_maxima()
        )
        spec, warnings = result.spec, warnings + result.warnings
    except (_Unreadable, SpecError) as exc:
        errors.append(str(exc))
    errors += _entry_errors(spec.type if spec else None, script, notebook)

    source = metadata_file or "pipeline.json"
    if spec is not None:  # every problem of the pipeline at once, not one per sync
        errors += spec_check_errors(spec, source)
        warnings += spec_time_warnings(spec, source, now=timezone.now())
        if spec.is_notebook and isinstance(notebook, Path):
            try:
                problems, notes = notebook_problems(
                    load_json(notebook, NOTEBOOK_FILE, MAX_NOTEBOOK_BYTES), spec, source
                )
            except _Unreadable as exc:
                problems, notes = [str(exc)], []
            errors += problems
            warnings += notes

    requirements_hash = ""
    try:
        requirements = _contained_file(folder, REQUIREMENTS_FILE, root)
        content = _read_bytes(requirements, REQUIREMENTS_FILE) if requirements else None
    except _Unreadable as exc:
        errors.append(str(exc))
        content = None
    extras = spec.extra_requirements if spec is not None else ()
    if content is not None or extras:
        # What the cache warm-up installs: requirements.txt and what the engine adds (the
        # notebook runner's packages), so a notebook pipeline is warmed up without one.
        added = "".join(f"\0{extra}" for extra in extras).encode()
        requirements_hash = hashlib.sha256((content or b"") + added).hexdigest()

    return DiscoveredPipeline(
        name=name,
        path=folder,
        has_requirements=content is not None,
        requirements_hash=requirements_hash,
        spec=None if errors else spec,
        error="; ".join(errors),
        warnings=warnings,
        metadata_file=metadata_file,
        declared_enabled=declared,
    )


def _cross_check(pipelines: list[DiscoveredPipeline]) -> None:
    """Warn about downstream triggers that name a pipeline or run configuration not found."""
    specs = {p.name: p.spec for p in pipelines if p.spec is not None}
    names = {p.name for p in pipelines}
    for found in pipelines:
        if found.spec is None:
            continue
        source = found.metadata_file or "pipeline.json"
        for index, trigger in enumerate(found.spec.downstream_triggers):
            label = f"{source}: key 'downstream_triggers[{index}]'"
            target = specs.get(trigger.pipeline)
            if trigger.pipeline not in names:
                found.warnings.append(f"{label}: no pipeline named '{trigger.pipeline}' exists")
            elif (
                trigger.run_config_id
                and target is not None
                and target.run_config(trigger.run_config_id) is None
            ):
                found.warnings.append(
                    f"{label}: pipeline '{trigger.pipeline}' has no run configuration "
                    f"'{trigger.run_config_id}'"
                )


def pipelines_root() -> Path:
    return Path(settings.PIPELINES_DIR)


def scan_pipelines(root: Path | None = None) -> Scan:
    """Scan `root` (default settings.PIPELINES_DIR); raises PipelinesDirError if unusable."""
    base = root or pipelines_root()
    try:
        real_root = base.resolve(strict=True)
    except OSError:
        raise PipelinesDirError(f"pipelines directory {base} does not exist") from None
    if not real_root.is_dir():
        raise PipelinesDirError(f"pipelines directory {base} is not a directory")
    with os.scandir(real_root) as entries:
        ordered = sorted(entries, key=lambda e: e.name)

    pipelines: list[DiscoveredPipeline] = []
    skipped: list[tuple[str, str]] = []
    for entry in ordered:
        name = _display_name(entry.name)
        if entry.name.startswith("."):
            continue
        folder = real_root / entry.name
        if entry.is_symlink():
            target = folder.resolve()
            if not _inside(target, real_root):
                pipelines.append(
                    DiscoveredPipeline(
                        name=name,
                        path=folder,
                        error=(
                            f"folder '{name}' is a symlink pointing outside the pipelines "
                            "directory; refused"
                        ),
                    )
                )
                continue
        if not entry.is_dir():
            continue
        found = inspect_folder(folder, real_root)
        if found is None:
            skipped.append((name, f"no {ENTRY_FILE} or {NOTEBOOK_FILE}"))
        else:
            pipelines.append(found)
    _cross_check(pipelines)
    link = checkouts.link_of(real_root)
    return Scan(pipelines=pipelines, skipped=skipped, commit=link.commit if link else "")


def discover_pipelines(root: Path | None = None) -> list[DiscoveredPipeline]:
    return scan_pipelines(root).pipelines
