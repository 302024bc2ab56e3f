"""List endpoints and admin changelists cost a fixed number of queries, whatever the row count.

Each list is fetched with a few rows and with many more; the query count must not grow (an
N+1 would add one query or more per row).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs_app.models import RunStatus, ScheduledJob, TriggerType
from secrets_app.services import secret_set
from tests import helpers_admin
from tests.helpers_api import client_for, make_pipeline, make_run

pytestmark = pytest.mark.django_db


def add_rows(index: int) -> None:
    pipeline = make_pipeline(
        f"p{index}", {"tags": ["t"], "webhook_key": f"key-{index}-0123456789abcdef"}
    )
    parent = make_run(pipeline, RunStatus.FAILED)
    make_run(pipeline, RunStatus.PENDING, parent_run=parent)
    ScheduledJob.objects.create(
        pipeline=pipeline, trigger_type=TriggerType.CRON, trigger_value="0 3 * * *"
    )
    secret_set(key=f"SECRET_{index}", value="value-of-the-secret")


def queries_for(client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def query_counts_with_few_and_many_rows(client, path: str) -> tuple[int, int]:
    for index in range(2):
        add_rows(index)
    few = queries_for(client, path)
    for index in range(2, 12):
        add_rows(index)
    return few, queries_for(client, path)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("READONLY", "/api/pipelines/"),
        ("READONLY", "/api/pipelines/?tag=t&enabled=true"),
        ("READONLY", "/api/runs/"),
        ("READONLY", "/api/schedules/"),
        ("ADMIN", "/api/secrets/"),
    ],
)
def test_api_lists_do_not_query_per_row(role, path):
    few, many = query_counts_with_few_and_many_rows(client_for(role), path)

    assert many == few


@pytest.mark.parametrize(
    "path",
    ["/admin/runs_app/pipelinerun/", "/admin/runs_app/scheduledjob/"],
)
def test_admin_changelists_do_not_query_per_row(path):
    few, many = query_counts_with_few_and_many_rows(helpers_admin.client_for("ADMIN"), path)

    assert many == few
