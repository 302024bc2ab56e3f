"""On PostgreSQL, JSON columns are jsonb (indexable, compared by value), timestamps carry a zone."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection, models

from pipelines_app.models import Pipeline
from runs_app.models import PipelineRun
from tests.helpers_schema import postgres_data_types

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="jsonb is a PostgreSQL type; SQLite stores JSON as text (run with DATABASE_URL)",
    ),
]

DOCUMENTED_JSON_COLUMNS = {
    ("pipelines", "metadata"),
    ("pipeline_runs", "env_vars"),
    ("pipeline_runs", "parameters"),
}


def column_types(table: str) -> dict[str, str]:
    return postgres_data_types(connection, table)


def test_the_documented_json_columns_are_jsonb():
    for table, column in sorted(DOCUMENTED_JSON_COLUMNS):
        assert column_types(table)[column] == "jsonb", f"{table}.{column}"


def test_every_json_field_of_our_models_is_jsonb():
    json_columns = {
        (model._meta.db_table, field.column)
        for model in apps.get_models()
        if model._meta.app_label in {"accounts_app", "pipelines_app", "runs_app", "secrets_app"}
        for field in model._meta.concrete_fields
        if isinstance(field, models.JSONField)
    }
    assert json_columns >= DOCUMENTED_JSON_COLUMNS
    for table, column in sorted(json_columns):
        assert column_types(table)[column] == "jsonb", f"{table}.{column}"


def test_timestamps_are_stored_with_time_zone():
    types = column_types("pipeline_runs")
    for column in ("queued_at", "started_at", "finished_at"):
        assert types[column] == "timestamp with time zone"


def test_jsonb_values_are_queried_by_content():
    pipeline = Pipeline.objects.create(
        pipeline_name="tagged", metadata={"tags": ["nightly", "etl"], "limits": {"cpu": 1.5}}
    )
    PipelineRun.objects.create(pipeline=pipeline, parameters={"day": "2024-01-01", "n": 3})
    assert Pipeline.objects.filter(metadata__tags__contains=["etl"]).count() == 1
    assert Pipeline.objects.filter(metadata__limits__cpu=1.5).count() == 1
    assert PipelineRun.objects.filter(parameters__n=3).count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT jsonb_typeof(metadata->'tags') FROM pipelines")
        assert cursor.fetchone()[0] == "array"
