"""Discovery of the pipelines directory, the sync into Pipeline rows, and `syncpipelines`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pipelines_app.discovery import discover_pipelines, scan_pipelines
from pipelines_app.errors import PipelinesDirError
from pipelines_app.models import Pipeline
from pipelines_app.services import pipeline_set_enabled, pipelines_sync
from pipelines_app.spec import PipelineSpec
from runs_app.models import PipelineRun, RunStatus
from tests.helpers_pipelines import full_pipeline_json

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "pipelines"


def by_name(root: Path | None = None) -> dict:
    return {p.name: p for p in discover_pipelines(root)}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the pipelines directory, holding things discovery must not read."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


# --- what counts as a pipeline ------------------------------------------------------------------


def test_it_finds_each_folder_with_a_main_py(make_pipeline_dir, pipelines_dir: Path) -> None:
    make_pipeline_dir("alpha")
    make_pipeline_dir("beta", pipeline_json={"description": "b"})
    (pipelines_dir / "notes").mkdir()
    (pipelines_dir / "notes" / "README.md").write_text("not a pipeline")
    (pipelines_dir / "loose_file.py").write_text("print(1)")

    scan = scan_pipelines()

    assert [p.name for p in scan.pipelines] == ["alpha", "beta"]
    assert scan.skipped == [("notes", "no main.py or main.ipynb")]
    alpha = scan.pipelines[0]
    assert alpha.path == pipelines_dir / "alpha"
    assert alpha.spec == PipelineSpec()
    assert (alpha.error, alpha.metadata_file, alpha.warnings) == ("", "", [])


def test_hidden_folders_are_ignored(make_pipeline_dir) -> None:
    make_pipeline_dir(".git")
    make_pipeline_dir(".draft")
    make_pipeline_dir("visible")
    assert list(by_name()) == ["visible"]


def test_pipeline_json_is_read(make_pipeline_dir) -> None:
    make_pipeline_dir("etl", pipeline_json=full_pipeline_json())
    found = by_name()["etl"]
    assert found.error == ""
    assert found.metadata_file == "pipeline.json"
    assert found.spec.description == "Nightly export"
    assert found.declared_enabled is False


def test_folder_json_is_the_fallback(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("report")
    (folder / "report.json").write_text(json.dumps({"description": "from report.json"}))
    (folder / "other.json").write_text(json.dumps({"description": "ignored"}))

    found = by_name()["report"]

    assert found.metadata_file == "report.json"
    assert found.spec.description == "from report.json"


def test_pipeline_json_wins_over_folder_json_with_a_warning(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("report", pipeline_json={"description": "main"})
    (folder / "report.json").write_text(json.dumps({"description": "shadowed"}))

    found = by_name()["report"]

    assert found.spec.description == "main"
    assert found.warnings == ["report.json is ignored because pipeline.json exists"]


def test_errors_in_folder_json_name_that_file(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("report")
    (folder / "report.json").write_text(json.dumps({"timeout": "soon"}))
    assert by_name()["report"].error == (
        "report.json: key 'timeout': expected a whole number, got string"
    )


def test_requirements_are_detected_and_hashed(make_pipeline_dir) -> None:
    make_pipeline_dir("with_reqs", requirements="six==1.16.0\n")
    make_pipeline_dir("without")

    found = by_name()

    assert found["with_reqs"].has_requirements is True
    expected = hashlib.sha256(b"six==1.16.0\n").hexdigest()
    assert found["with_reqs"].requirements_hash == expected
    assert (found["without"].has_requirements, found["without"].requirements_hash) == (False, "")


# --- errors -------------------------------------------------------------------------------------


def test_invalid_json_is_an_error_with_its_position(make_pipeline_dir) -> None:
    make_pipeline_dir("broken", pipeline_json='{"description": "x",\n  "tags": [}')
    found = by_name()["broken"]
    assert found.spec is None
    assert found.error.startswith("pipeline.json: invalid JSON: ")
    assert "(line 2, column 12)" in found.error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "pipeline.json: invalid JSON: Expecting value (line 1, column 1)"),
        ('{"timeout": 1, "timeout": 2}', "pipeline.json: invalid JSON: key 'timeout' appears more"),
        ('{"cpu_hard_limit": NaN}', "pipeline.json: invalid JSON: NaN is not valid JSON"),
        ('{"tags": ' + "[" * 100_000, "pipeline.json: invalid JSON: nested too deeply"),
        ("[1, 2]", "pipeline.json: expected a JSON object at the top level, got array"),
        ('{"schedule_cron": "0 0 *"}', "pipeline.json: key 'schedule_cron': expected 5 fields"),
        ('{"tags": "etl"}', "pipeline.json: key 'tags': expected an array of strings, got string"),
    ],
)
def test_a_broken_pipeline_json_is_an_error_not_defaults(
    make_pipeline_dir, content: str, message: str
) -> None:
    make_pipeline_dir("broken", pipeline_json=content)
    found = by_name()["broken"]
    assert found.spec is None
    assert found.error.startswith(message)


def test_a_pipeline_json_that_is_not_utf8_is_an_error(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("latin")
    (folder / "pipeline.json").write_bytes('{"description": "caf\xe9"}'.encode("latin-1"))
    assert by_name()["latin"].error == "pipeline.json: not valid UTF-8 (byte 20)"


def test_a_utf8_bom_is_accepted(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("bom")
    (folder / "pipeline.json").write_bytes(b'\xef\xbb\xbf{"description": "ok"}')
    assert by_name()["bom"].spec.description == "ok"


def test_a_huge_pipeline_json_is_refused(make_pipeline_dir) -> None:
    make_pipeline_dir("huge", pipeline_json=json.dumps({"description": "x" * 1_100_000}))
    assert by_name()["huge"].error == "pipeline.json: larger than 1024 KiB"


@pytest.mark.parametrize("name", ["my pipeline", "-dash", "_private", "a..b", "x" * 101, "naïve"])
def test_unsafe_folder_names_are_errors(make_pipeline_dir, name: str) -> None:
    make_pipeline_dir(name, pipeline_json={"description": "fine otherwise"})
    found = by_name()[name]
    assert found.spec is None
    assert found.error.startswith(f"folder name {name!r} is not a safe identifier")


@pytest.mark.parametrize("name", ["etl", "etl-2", "v1.2_export", "A" * 100, "9lives"])
def test_safe_folder_names_are_accepted(make_pipeline_dir, name: str) -> None:
    make_pipeline_dir(name)
    assert by_name()[name].error == ""


def test_main_py_that_is_a_directory_is_an_error(pipelines_dir: Path) -> None:
    (pipelines_dir / "odd" / "main.py").mkdir(parents=True)
    assert by_name()["odd"].error == "main.py is not a regular file"


# --- path safety --------------------------------------------------------------------------------


def test_a_folder_symlink_leaving_the_directory_is_refused_unread(
    pipelines_dir: Path, outside: Path
) -> None:
    (outside / "main.py").write_text("print('outside')")
    (outside / "pipeline.json").write_text("{ this would be an invalid JSON error if read")
    (pipelines_dir / "escape").symlink_to(outside, target_is_directory=True)

    found = by_name()["escape"]

    assert found.spec is None
    assert found.error == (
        "folder 'escape' is a symlink pointing outside the pipelines directory; refused"
    )


@pytest.mark.parametrize("filename", ["main.py", "pipeline.json", "requirements.txt"])
def test_a_file_symlink_leaving_the_directory_is_not_read(
    make_pipeline_dir, outside: Path, filename: str
) -> None:
    folder = make_pipeline_dir("leaky")
    target = outside / "secret.txt"
    target.write_text('{"description": "TOP SECRET"}')
    (folder / filename).unlink(missing_ok=True)
    (folder / filename).symlink_to(target)

    found = by_name()["leaky"]

    assert found.spec is None
    assert f"{filename} is a symlink pointing outside the pipelines directory" in found.error
    assert "TOP SECRET" not in found.error
    assert found.requirements_hash == ""


def test_a_symlinked_metadata_file_leaving_via_folder_json_is_not_read(
    make_pipeline_dir, outside: Path
) -> None:
    folder = make_pipeline_dir("leaky")
    (outside / "x.json").write_text('{"description": "TOP SECRET"}')
    (folder / "leaky.json").symlink_to(outside / "x.json")
    assert "leaky.json is a symlink pointing outside" in by_name()["leaky"].error


def test_symlinks_that_stay_inside_the_directory_are_followed(
    make_pipeline_dir, pipelines_dir: Path
) -> None:
    shared = make_pipeline_dir("shared", pipeline_json={"description": "shared config"})
    folder = make_pipeline_dir("linked")
    (folder / "pipeline.json").symlink_to(shared / "pipeline.json")
    (pipelines_dir / "alias").symlink_to(shared, target_is_directory=True)

    found = by_name()

    assert found["linked"].spec.description == "shared config"
    assert found["alias"].spec.description == "shared config"
    assert found["alias"].error == ""


def test_a_missing_pipelines_directory_is_an_error(settings, tmp_path: Path) -> None:
    settings.PIPELINES_DIR = tmp_path / "nowhere"
    with pytest.raises(PipelinesDirError, match="does not exist"):
        scan_pipelines()


def test_a_downstream_trigger_of_an_unknown_pipeline_is_a_warning(make_pipeline_dir) -> None:
    make_pipeline_dir(
        "upstream",
        pipeline_json={
            "downstream_triggers": [
                {"pipeline": "nowhere"},
                {"pipeline": "target", "run_config_id": "nope"},
            ]
        },
    )
    make_pipeline_dir("target")

    found = by_name()["upstream"]

    assert found.error == ""
    assert found.warnings == [
        "pipeline.json: key 'downstream_triggers[0]': no pipeline named 'nowhere' exists",
        "pipeline.json: key 'downstream_triggers[1]': pipeline 'target' has no run "
        "configuration 'nope'",
    ]


# --- sync into the database ---------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_creates_rows_with_the_normalised_spec(make_pipeline_dir) -> None:
    make_pipeline_dir("etl", pipeline_json=full_pipeline_json(), requirements="six\n")
    make_pipeline_dir("plain")

    report = pipelines_sync()

    assert sorted(report.created) == ["etl", "plain"]
    assert report.requirements_changed == ["etl"]
    etl = Pipeline.objects.get(pk="etl")
    assert etl.metadata == etl.spec.to_dict()
    assert etl.spec.description == "Nightly export"
    assert etl.metadata["mem_hard_limit"] == 1610612736
    assert (etl.has_requirements, etl.enabled, etl.is_missing) == (True, False, False)
    assert etl.requirements_hash == hashlib.sha256(b"six\n").hexdigest()
    assert etl.discovered_at is not None
    assert etl.discovery_error == ""
    plain = Pipeline.objects.get(pk="plain")
    assert (plain.enabled, plain.has_requirements, plain.metadata["timeout"]) == (True, False, None)
    assert plain.is_runnable


@pytest.mark.django_db
def test_resync_refreshes_metadata_and_never_resets_counters(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("etl", pipeline_json={"description": "v1"})
    pipelines_sync()
    Pipeline.objects.filter(pk="etl").update(
        total_runs=10, successful_runs=7, failed_runs=3, webhook_runs=2
    )
    (folder / "pipeline.json").write_text(json.dumps({"description": "v2", "timeout": 30}))
    (folder / "requirements.txt").write_text("six\n")

    report = pipelines_sync()

    assert report.updated == ["etl"]
    etl = Pipeline.objects.get(pk="etl")
    assert (etl.description, etl.spec.timeout, etl.has_requirements) == ("v2", 30, True)
    counters = (etl.total_runs, etl.successful_runs, etl.failed_runs, etl.webhook_runs)
    assert counters == (10, 7, 3, 2)


@pytest.mark.django_db
def test_an_unchanged_folder_is_not_rewritten(make_pipeline_dir) -> None:
    make_pipeline_dir("etl", requirements="six\n")
    pipelines_sync()
    first_seen = Pipeline.objects.get(pk="etl").discovered_at

    report = pipelines_sync()

    assert (report.created, report.updated, report.requirements_changed) == ([], [], [])
    assert Pipeline.objects.get(pk="etl").discovered_at >= first_seen


@pytest.mark.django_db
def test_a_vanished_folder_marks_the_pipeline_missing_and_keeps_history(
    make_pipeline_dir, pipelines_dir: Path
) -> None:
    folder = make_pipeline_dir("old")
    pipelines_sync()
    pipeline = Pipeline.objects.get(pk="old")
    PipelineRun.objects.create(pipeline=pipeline, status=RunStatus.SUCCESS)
    Pipeline.objects.filter(pk="old").update(total_runs=1, successful_runs=1)
    (folder / "main.py").rename(folder / "main.py.bak")

    report = pipelines_sync()

    assert report.missing == ["old"]
    pipeline.refresh_from_db()
    assert pipeline.is_missing and not pipeline.is_runnable
    assert "missing" in pipeline.not_runnable_reason
    assert (pipeline.total_runs, pipeline.runs.count()) == (1, 1)

    (folder / "main.py.bak").rename(folder / "main.py")
    assert pipelines_sync().missing == []
    pipeline.refresh_from_db()
    assert not pipeline.is_missing and pipeline.is_runnable


@pytest.mark.django_db
def test_a_broken_pipeline_is_recorded_and_cannot_run(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("etl", pipeline_json={"description": "good", "timeout": 5})
    pipelines_sync()
    (folder / "pipeline.json").write_text('{"description": "bad", "timeout": "5"}')

    report = pipelines_sync()

    assert report.errors == {
        "etl": "pipeline.json: key 'timeout': expected a whole number, got string"
    }
    etl = Pipeline.objects.get(pk="etl")
    assert etl.discovery_error == report.errors["etl"]
    assert etl.metadata == {}
    assert not etl.is_runnable
    assert "configuration error" in etl.not_runnable_reason

    (folder / "pipeline.json").write_text('{"description": "fixed", "timeout": 5}')
    pipelines_sync()
    etl.refresh_from_db()
    assert (etl.discovery_error, etl.description, etl.is_runnable) == ("", "fixed", True)


@pytest.mark.django_db
def test_warnings_are_stored_on_the_row(make_pipeline_dir) -> None:
    make_pipeline_dir("etl", pipeline_json={"schedule_crom": "* * * * *"})

    report = pipelines_sync()

    expected = [
        "pipeline.json: key 'schedule_crom': unknown key, ignored; did you mean 'schedule_cron'?"
    ]
    assert report.warnings == {"etl": expected}
    etl = Pipeline.objects.get(pk="etl")
    assert etl.discovery_warnings == expected
    assert etl.is_runnable


@pytest.mark.django_db
def test_an_escaping_symlink_becomes_a_broken_row(pipelines_dir: Path, outside: Path) -> None:
    (outside / "main.py").write_text("print(1)")
    (pipelines_dir / "escape").symlink_to(outside, target_is_directory=True)

    pipelines_sync()

    escape = Pipeline.objects.get(pk="escape")
    assert "symlink pointing outside" in escape.discovery_error
    assert not escape.is_runnable


@pytest.mark.django_db
def test_a_missing_directory_marks_nothing_missing(make_pipeline_dir, settings, tmp_path) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    settings.PIPELINES_DIR = tmp_path / "unmounted"

    with pytest.raises(PipelinesDirError):
        pipelines_sync()

    assert Pipeline.objects.get(pk="etl").is_missing is False


@pytest.mark.django_db
def test_requirements_changes_are_reported_and_reset_the_warm_up(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("etl", requirements="six==1.16.0\n")
    make_pipeline_dir("other", requirements="six\n")
    pipelines_sync()
    Pipeline.objects.update(last_cache_warmup="2026-01-01T00:00:00Z", cache_warmup_error="old")
    (folder / "requirements.txt").write_text("six==1.17.0\n")

    report = pipelines_sync()

    assert report.requirements_changed == ["etl"]
    etl = Pipeline.objects.get(pk="etl")
    assert (etl.last_cache_warmup, etl.cache_warmup_error) == (None, "")
    assert Pipeline.objects.get(pk="other").last_cache_warmup is not None


# --- enabled: the operator's switch vs pipeline.json -------------------------------------------


def write_json(folder: Path, data: dict) -> None:
    (folder / "pipeline.json").write_text(json.dumps(data))


@pytest.mark.django_db
def test_a_new_pipeline_takes_enabled_from_the_file(make_pipeline_dir) -> None:
    make_pipeline_dir("off", pipeline_json={"enabled": False})
    make_pipeline_dir("on")
    make_pipeline_dir("broken_off", pipeline_json={"enabled": False, "timeout": "x"})
    pipelines_sync()
    enabled = dict(Pipeline.objects.values_list("pipeline_name", "enabled"))
    assert enabled == {"off": False, "on": True, "broken_off": False}


@pytest.mark.django_db
def test_sync_keeps_the_operators_switch_while_the_file_is_unchanged(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("etl", pipeline_json={"enabled": True, "description": "a"})
    pipelines_sync()
    pipeline_set_enabled(pipeline=Pipeline.objects.get(pk="etl"), enabled=False)
    write_json(folder, {"enabled": True, "description": "b"})

    pipelines_sync()

    assert Pipeline.objects.get(pk="etl").enabled is False


@pytest.mark.django_db
def test_changing_enabled_in_the_file_wins(make_pipeline_dir) -> None:
    folder = make_pipeline_dir("etl", pipeline_json={"enabled": False})
    pipelines_sync()
    pipeline_set_enabled(pipeline=Pipeline.objects.get(pk="etl"), enabled=True)
    pipelines_sync()
    assert Pipeline.objects.get(pk="etl").enabled is True

    write_json(folder, {"enabled": True})
    pipelines_sync()
    assert Pipeline.objects.get(pk="etl").enabled is True

    write_json(folder, {"enabled": False})
    pipelines_sync()
    assert Pipeline.objects.get(pk="etl").enabled is False


@pytest.mark.django_db
def test_pipeline_set_enabled_touches_only_the_switch(make_pipeline_dir) -> None:
    make_pipeline_dir("etl")
    pipelines_sync()
    stale = Pipeline.objects.get(pk="etl")
    Pipeline.objects.filter(pk="etl").update(total_runs=5)

    result = pipeline_set_enabled(pipeline=stale, enabled=False)

    assert result.enabled is False
    fresh = Pipeline.objects.get(pk="etl")
    assert (fresh.enabled, fresh.total_runs) == (False, 5)
    assert "disabled" in fresh.not_runnable_reason


# --- the model ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pipeline_spec_is_cached_until_metadata_changes(make_pipeline_dir, pipelines_dir) -> None:
    folder = make_pipeline_dir("etl", pipeline_json={"timeout": 5})
    pipelines_sync()
    pipeline = Pipeline.objects.get(pk="etl")

    assert pipeline.spec is pipeline.spec
    assert pipeline.folder == pipelines_dir / "etl"

    write_json(folder, {"timeout": 9})
    pipelines_sync()
    pipeline.refresh_from_db()
    assert pipeline.spec.timeout == 9


def test_pipeline_folder_refuses_names_that_would_leave_the_directory() -> None:
    with pytest.raises(ValueError, match="cannot name a folder"):
        _ = Pipeline(pipeline_name="../etc").folder


# --- the syncpipelines command ------------------------------------------------------------------


@pytest.mark.django_db
def test_syncpipelines_prints_a_table_of_states(make_pipeline_dir) -> None:
    make_pipeline_dir("good", pipeline_json={"schedule_cron": "0 * * * *"}, requirements="six\n")
    make_pipeline_dir("off", pipeline_json={"enabled": False, "colour": "red"})
    make_pipeline_dir("bad", pipeline_json="{oops")
    gone = make_pipeline_dir("gone")
    pipelines_sync()
    (gone / "main.py").unlink()
    out = StringIO()

    call_command("syncpipelines", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["PIPELINE", "REQUIREMENTS", "SCHEDULES", "STATE"]
    rows = {line.split()[0]: line.split(maxsplit=3)[1:] for line in lines[1:5]}
    assert rows["good"] == ["yes", "1", "ready"]
    assert rows["off"] == ["no", "0", "disabled"]
    assert rows["bad"][:2] == ["no", "-"]
    assert rows["bad"][2].startswith("broken: pipeline.json: invalid JSON")
    assert rows["gone"] == ["no", "0", "missing"]
    assert "warning: off: pipeline.json: key 'colour': unknown key, ignored" in out.getvalue()
    assert "skipped: gone: no main.py or main.ipynb" in out.getvalue()
    assert lines[-1] == "3 pipeline(s) found, 1 now missing, 1 with errors"


@pytest.mark.django_db
def test_syncpipelines_strict_fails_on_errors(make_pipeline_dir) -> None:
    make_pipeline_dir("bad", pipeline_json="{oops")
    with pytest.raises(CommandError, match="1 pipeline\\(s\\) have configuration errors"):
        call_command("syncpipelines", "--strict", stdout=StringIO())


@pytest.mark.django_db
def test_syncpipelines_reports_a_missing_directory(settings, tmp_path: Path) -> None:
    settings.PIPELINES_DIR = tmp_path / "nowhere"
    with pytest.raises(CommandError, match="does not exist"):
        call_command("syncpipelines", stdout=StringIO())


# --- the shipped examples -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_example_pipelines_are_valid(settings) -> None:
    settings.PIPELINES_DIR = EXAMPLES_DIR

    report = pipelines_sync()

    names = {p.name for p in report.pipelines}
    assert names == {
        "hello_world",
        "with_requirements",
        "failing",
        "with_parameters",
        "scheduled",
        "full_config",
    }
    assert (report.errors, report.warnings) == ({}, {})
    assert Pipeline.objects.get(pk="with_requirements").has_requirements
    assert Pipeline.objects.get(pk="scheduled").spec.schedule_cron == "*/5 * * * *"
    full = Pipeline.objects.get(pk="full_config").spec
    assert [rc.id for rc in full.run_configs] == ["nightly", "weekdays", "on_demand"]
    assert full.downstream_triggers[0].pipeline == "hello_world"
    assert all(p.spec.description and p.spec.tags for p in report.pipelines)


@pytest.mark.parametrize(
    ("name", "env", "exit_code", "expected"),
    [
        ("hello_world", {"GREETING": "Hi"}, 0, "Hi from Fast-Flow!"),
        ("with_parameters", {"NAME": "Ada", "COUNT": "2"}, 0, "2/2: hello, Ada"),
        ("failing", {}, 1, "something went wrong"),
        ("scheduled", {}, 0, "scheduled tick at"),
        ("full_config", {"MODE": "nightly"}, 0, "'nightly' mode"),
    ],
)
def test_the_example_pipelines_behave_as_described(
    name: str, env: dict, exit_code: int, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "main.py"],
        cwd=EXAMPLES_DIR / name,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == exit_code
    assert expected in result.stdout + result.stderr
