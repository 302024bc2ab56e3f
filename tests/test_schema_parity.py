"""docs/schema.md is the authoritative schema: it must match the models and the real tables."""

from __future__ import annotations

import pytest

from accounts_app.models import Role, User
from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun, RunStatus, ScheduledJob, TriggerType
from tests.helpers_schema import (
    SCHEMA_DOC,
    SchemaDocError,
    inherited_field_names,
    parse_schema_doc,
    schema_differences,
)

pytestmark = pytest.mark.django_db

SEVEN_DOCUMENTED_TABLES = {
    "pipelines",
    "pipeline_runs",
    "scheduled_jobs",
    "secrets",
    "users",
    "invitations",
    "sessions",
}


@pytest.fixture
def doc_text() -> str:
    return SCHEMA_DOC.read_text()


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the doc no longer contains exactly one {old!r}"
    return text.replace(old, new)


def test_it_matches_the_models_and_the_database(doc_text):
    diffs = schema_differences(doc_text)
    assert not diffs, "docs/schema.md differs from the database:\n" + "\n".join(diffs)


def test_it_documents_the_seven_original_tables_and_the_added_tables(doc_text):
    tables = parse_schema_doc(doc_text).tables
    assert set(tables) >= SEVEN_DOCUMENTED_TABLES
    assert set(tables) - SEVEN_DOCUMENTED_TABLES == {
        "engine_instances",
        "engine_leases",
        "git_repository",
        "rate_limit_buckets",
        "seen_nonces",
        "run_stats",
        "notification_channels",
        "notification_events",
        "notification_deliveries",
        "notification_attempts",
        "audit_log",
        "run_period_stats",
    }


def test_it_keeps_the_documented_primary_and_foreign_key_columns(doc_text):
    tables = parse_schema_doc(doc_text).tables
    assert tables["pipelines"].columns["pipeline_name"].key == "PK"
    for table in ("pipeline_runs", "scheduled_jobs"):
        column = tables[table].columns["pipeline_name"]
        assert column.key == "FK → pipelines.pipeline_name"
    assert tables["sessions"].columns["user_id"].key == "FK → users.id"
    assert Pipeline._meta.pk.column == "pipeline_name"
    assert PipelineRun._meta.get_field("pipeline").column == "pipeline_name"
    assert ScheduledJob._meta.get_field("pipeline").column == "pipeline_name"


def test_it_documents_the_enum_values_of_the_models(doc_text):
    enums = {e.name: e.values for e in parse_schema_doc(doc_text).enums}
    assert enums["RunStatus"] == tuple(RunStatus.values)
    assert enums["TriggerType"] == tuple(TriggerType.values)
    assert enums["Role"] == tuple(Role.values)
    assert RunStatus.values == ["PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED"]
    assert TriggerType.values == ["CRON", "INTERVAL"]
    assert Role.values == ["ADMIN", "WRITE", "READONLY"]


def test_user_inherits_only_password_and_last_login(doc_text):
    assert inherited_field_names(User) == {"password", "last_login"}
    users = parse_schema_doc(doc_text).tables["users"]
    assert {name for name, c in users.columns.items() if c.inherited} == {
        "password",
        "last_login",
    }


def test_it_reports_a_removed_column_with_a_readable_diff(doc_text):
    broken = replace_once(
        doc_text,
        "| `webhook_runs` | integer | no | | Number of runs started by a webhook. |\n",
        "",
    )
    diffs = schema_differences(broken)
    assert diffs == [
        "pipelines.webhook_runs [column] documented: (missing) / model: integer, not null "
        "/ database: integer, not null"
    ]


def test_it_reports_a_wrong_type_length_nullability_and_key(doc_text):
    broken = replace_once(
        doc_text,
        "| `requirements_hash` | string(64) | no | |",
        "| `requirements_hash` | string(40) | yes | UNIQUE |",
    )
    diffs = schema_differences(broken)
    where = "pipelines.requirements_hash"
    assert f"{where} [type] documented: string(40) / model: string(64)" in diffs
    assert f"{where} [type] documented: string(40) / database: string(64)" in diffs
    assert f"{where} [null] documented: yes / database: no" in diffs
    assert f"{where} [key] documented: UNIQUE / database: -" in diffs
    assert len(diffs) == 6


def test_it_reports_a_json_column_documented_as_text(doc_text):
    broken = replace_once(doc_text, "| `metadata` | json |", "| `metadata` | text |")
    diffs = schema_differences(broken)
    assert "pipelines.metadata [type] documented: text / database: json" in diffs


def test_it_reports_an_enum_value_missing_from_the_doc(doc_text):
    broken = replace_once(
        doc_text,
        "| `trigger_type` | enum(CRON, INTERVAL) |",
        "| `trigger_type` | enum(CRON) |",
    )
    diffs = schema_differences(broken)
    assert (
        "scheduled_jobs.trigger_type [type] documented: enum(CRON) / model: enum(CRON, INTERVAL)"
        in diffs
    )
    assert (
        "scheduled_jobs.trigger_type [enum TriggerType] Enums section: CRON, INTERVAL / "
        "column type: enum(CRON)" in diffs
    )


def test_it_reports_a_wrong_foreign_key_target(doc_text):
    broken = replace_once(
        doc_text,
        "| `user_id` | uuid | no | FK → users.id |",
        "| `user_id` | uuid | no | FK → invitations.id |",
    )
    diffs = schema_differences(broken)
    assert "sessions.user_id [key] documented: FK → invitations.id / database: FK → users.id" in (
        diffs
    )


def test_it_reports_an_undocumented_table(doc_text):
    start = doc_text.index("### EngineLease")
    end = doc_text.index("###", start + 3)
    diffs = schema_differences(doc_text[:start] + doc_text[end:])
    assert diffs == ["engine_leases [table] documented: (missing) / model: runs_app.EngineLease"]


def test_it_reports_a_missing_composite_index(doc_text):
    broken = replace_once(
        doc_text,
        "- `run_status_queued_idx`: (`status`, `queued_at`)",
        "- `run_status_queued_idx`: (`status`, `started_at`)",
    )
    diffs = schema_differences(broken)
    assert "pipeline_runs [composite index] only in documented: (status, started_at)" in diffs
    assert "pipeline_runs [composite index] only in database: (status, queued_at)" in diffs


def test_it_rejects_an_unknown_type_family_with_the_line_number(doc_text):
    broken = replace_once(doc_text, "| `exit_code` | integer |", "| `exit_code` | number |")
    line = broken.splitlines().index(
        next(row for row in broken.splitlines() if row.startswith("| `exit_code`"))
    )
    with pytest.raises(SchemaDocError, match=rf"line {line + 1}: unknown type 'number'"):
        parse_schema_doc(broken)


def test_it_reports_a_documented_column_dropped_from_the_database(doc_text):
    # The other direction: the doc still lists the column, the real table lost it.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE pipelines DROP COLUMN webhook_runs")
    diffs = schema_differences(doc_text)
    assert diffs == [
        "pipelines.webhook_runs [column] documented: integer, not null / model: integer, not null "
        "/ database: (missing)"
    ]


def test_it_reports_a_documented_column_the_model_lost(doc_text, monkeypatch):
    field = Pipeline._meta.get_field("webhook_runs")
    concrete = tuple(f for f in Pipeline._meta.concrete_fields if f is not field)
    monkeypatch.setattr(Pipeline._meta, "concrete_fields", concrete)
    diffs = schema_differences(doc_text)
    assert diffs == [
        "pipelines.webhook_runs [column] documented: integer, not null / model: (missing) "
        "/ database: integer, not null"
    ]
