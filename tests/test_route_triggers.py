"""Route triggers: a run writes a label to $FASTFLOW_ROUTE_FILE; a downstream trigger with
`on_route` fires only when the run succeeded with that label; the route is kept on the run."""

from __future__ import annotations

import pytest

from pipelines_app.models import Pipeline
from pipelines_app.spec import parse_pipeline_json
from runs_app.engine.outputs import output_dir_for
from runs_app.logs import run_log_file
from runs_app.models import PipelineRun, RunStatus
from runs_app.services import run_enqueue
from tests.helpers_compat import BOTH_EXECUTORS, use_executor
from tests.helpers_engine import (
    ThreadEngine,
    claimed_run,
    finish_claimed,
    log_notes,
    log_text,
    make_pipeline,
    wait_for,
    wait_until_finished,
)

ROUTER = (
    "import os, sys\n"
    "route = os.environ.get('ROUTE', '')\n"
    "with open(os.environ['FASTFLOW_ROUTE_FILE'], 'w') as fh:\n"
    "    fh.write(route + '\\n')\n"
    "print('routed to', route)\n"
    "sys.exit(int(os.environ.get('EXIT', '0')))\n"
)
TRIGGERS = [
    {"pipeline": "on_big"},  # a plain on_success trigger fires whatever the route
    {"pipeline": "big_orders", "on_route": "big"},
    {"pipeline": "small_orders", "on_route": "small"},
    {"pipeline": "on_failure_only", "on_success": False, "on_failure": True},
]


def make_router() -> None:
    for name in ("on_big", "big_orders", "small_orders", "on_failure_only"):
        make_pipeline(name)
    make_pipeline("router", ROUTER, pipeline_json={"downstream_triggers": TRIGGERS})


def children(run: PipelineRun) -> set[str]:
    return set(PipelineRun.objects.filter(parent_run=run).values_list("pipeline_id", flat=True))


def test_on_route_is_parsed_and_the_ignored_flags_are_warned_about():
    result = parse_pipeline_json(
        {
            "downstream_triggers": [
                {"pipeline": "a", "on_route": "big", "on_failure": True},
                {"pipeline": "a", "on_route": "small"},
            ]
        },
        source="pipeline.json",
    )

    big, small = result.spec.downstream_triggers
    assert (big.on_route, small.on_route) == ("big", "small")
    assert big.fires_for(succeeded=True, route="big")
    assert not big.fires_for(succeeded=False, route="big")  # on_failure does not apply
    assert not big.fires_for(succeeded=True, route="small")
    assert not big.fires_for(succeeded=True, route="")
    assert result.warnings == [
        "pipeline.json: key 'downstream_triggers[0].on_failure': ignored with on_route: a route "
        "trigger fires when the run succeeded and wrote that route"
    ]


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("", "expected a route label"),
        (" big", "expected a route label"),
        ("a\tb", "expected a route label"),
        ("x" * 129, "is longer than 128 characters"),
        (7, "expected a string"),
    ],
)
def test_a_bad_on_route_is_an_error(label, reason):
    from pipelines_app.errors import SpecError

    with pytest.raises(SpecError) as caught:
        parse_pipeline_json(
            {"downstream_triggers": [{"pipeline": "a", "on_route": label}]}, source="pipeline.json"
        )
    assert f"key 'downstream_triggers[0].on_route': {reason}" in str(caught.value)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("executor_name", BOTH_EXECUTORS)
def test_the_route_a_run_writes_picks_the_downstream_runs(executor_name, request, settings):
    use_executor(request, settings, executor_name)
    make_router()
    routed = run_enqueue(pipeline="router", triggered_by="manual", parameters={"ROUTE": "big"})
    failed = run_enqueue(
        pipeline="router", triggered_by="manual", parameters={"ROUTE": "small", "EXIT": "3"}
    )

    with ThreadEngine(executor=executor_name):
        for run in (routed, failed):
            wait_until_finished(run, timeout=120)
        wait_for(lambda: len(children(routed)) == 2 and children(failed), timeout=60)
        # The output directory (bind-mounted read-write in Docker) goes with the execution.
        wait_for(lambda: not output_dir_for(str(routed.id)).exists(), timeout=30)

    assert routed.status == RunStatus.SUCCESS and routed.route == "big"
    assert children(routed) == {"on_big", "big_orders"}
    # A failed run keeps its route, but route triggers fire only on success.
    assert failed.status == RunStatus.FAILED and failed.route == "small"
    assert children(failed) == {"on_failure_only"}
    assert "route: big" in log_notes(routed)
    assert "triggered downstream pipeline 'big_orders' (route 'big')" in log_text(routed)


@pytest.mark.django_db(transaction=True)
def test_a_run_without_a_route_fires_no_route_trigger(request, settings):
    use_executor(request, settings, "local")
    make_router()
    run = run_enqueue(pipeline="router", triggered_by="manual")  # writes an empty route

    with ThreadEngine():
        wait_until_finished(run, timeout=120)
        wait_for(lambda: children(run), timeout=30)

    assert run.route == ""
    assert children(run) == {"on_big"}
    assert "route file is empty: no route recorded" in log_text(run)


@pytest.mark.django_db(transaction=True)
def test_a_symlinked_route_file_is_refused_not_followed(request, settings, tmp_path):
    use_executor(request, settings, "local")
    secret = tmp_path / "engine-only.txt"
    secret.write_text("big")
    make_pipeline(
        "sneaky",
        f"import os\nos.symlink({str(secret)!r}, os.environ['FASTFLOW_ROUTE_FILE'])\n",
        pipeline_json={"downstream_triggers": [{"pipeline": "target", "on_route": "big"}]},
    )
    make_pipeline("target")
    run = run_enqueue(pipeline="sneaky", triggered_by="manual")

    with ThreadEngine():
        wait_until_finished(run, timeout=120)

    assert run.status == RunStatus.SUCCESS and run.route == ""
    assert not children(run)
    assert "route file ignored:" in log_text(run)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "route", "note"),
    [
        ("big\n", "big", "route: big"),
        ("  big  \n\n", "big", "route: big"),
        ("\n", "", "route file is empty: no route recorded"),
        ("two\nlines", "", "route file ignored: expected a route label"),
        ("y" * 200, "", "route file ignored: is longer than 128 characters"),
    ],
)
def test_the_route_text_is_checked_before_it_is_recorded(text, route, note):
    make_router()
    run = claimed_run(Pipeline.objects.get(pk="router"))
    PipelineRun.objects.filter(id=run.id).update(log_file=str(run_log_file(run)))

    finish_claimed(run, 0, route=text)

    run.refresh_from_db()
    assert run.route == route
    assert any(n.startswith(note) for n in log_notes(run)), log_notes(run)
    assert ("big_orders" in children(run)) == (route == "big")
