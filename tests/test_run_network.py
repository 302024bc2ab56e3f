"""The run's Docker network: pipeline.json's `network` (or FASTFLOW_RUNNER_NETWORK) chooses it,
within the operator's allowlist (checked at discovery and again before a run starts); `none`
means no interface but loopback, and a `none` pipeline with requirements runs the environment
the warm-up (which has a network) prepared. Real Docker, real discovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines_app.models import Pipeline
from pipelines_app.services import pipelines_sync
from runs_app.engine.dispatcher import RunSpecError, run_spec_build
from runs_app.engine.docker_executor import NO_NETWORK_HINT, warmup_network
from runs_app.engine.executors import get_executor
from runs_app.engine.warmup import warm_cache
from runs_app.errors import PipelineNotRunnable
from runs_app.models import PipelineRun
from runs_app.services import run_enqueue
from tests.helpers_engine import claimed_run, make_pipeline
from tests.helpers_executor import (
    HOST_CA_BUNDLE,
    make_spec,
    run_to_end,
    use_runner_image,
    user_lines,
    wait_for_line,
    wait_in_thread,
)

pytestmark = pytest.mark.django_db

# Which interfaces the run sees, then the network mode Docker gave its container.
SHOW_INTERFACES = (
    "import os, time\n"
    "print('interfaces', ','.join(sorted(os.listdir('/sys/class/net'))), flush=True)\n"
    "time.sleep(float(os.environ.get('LINGER', '0')))\n"
)
REQUIREMENT = "tomli-w==1.0.0\n"
USES_IT = "import tomli_w\nprint(tomli_w.dumps({'answer': 42}).strip())\n"
NOT_IN_ANY_CACHE = "fastflow-no-such-package-n3t==1.0\n"


def synced(make_pipeline_dir, name: str, network: object) -> Pipeline:
    make_pipeline_dir(name, pipeline_json={"network": network})
    pipelines_sync()
    return Pipeline.objects.get(pipeline_name=name)


# --- Discovery: which networks a pipeline may choose -------------------------------------------


@pytest.mark.parametrize("network", ["none", "bridge"])
def test_the_default_allowlist_lets_a_pipeline_choose_none_or_bridge(make_pipeline_dir, network):
    pipeline = synced(make_pipeline_dir, "chooser", network)
    assert pipeline.discovery_error == ""
    assert pipeline.spec.network == network


def test_host_is_refused_unless_the_operator_lists_it(make_pipeline_dir, settings):
    pipeline = synced(make_pipeline_dir, "wants_host", "host")
    assert pipeline.discovery_error == (
        "pipeline.json: key 'network': network 'host' is not allowed in this installation (the "
        "host's own network stack: it reaches every service listening on the host); allowed: "
        "bridge, none (FASTFLOW_RUNNER_NETWORK, FASTFLOW_RUNNER_NETWORKS_ALLOWED)"
    )
    with pytest.raises(PipelineNotRunnable):
        run_enqueue(pipeline=pipeline, triggered_by="manual")

    settings.FASTFLOW_RUNNER_NETWORKS_ALLOWED = ("none", "bridge", "host")
    pipelines_sync()
    pipeline.refresh_from_db()
    assert pipeline.discovery_error == ""
    assert run_enqueue(pipeline=pipeline, triggered_by="manual").status == "PENDING"


def test_a_named_network_needs_the_allowlist_and_the_default_is_always_allowed(
    make_pipeline_dir, settings
):
    assert "not allowed" in synced(make_pipeline_dir, "backend", "backend-net").discovery_error

    settings.FASTFLOW_RUNNER_NETWORK = "backend-net"  # the installation's default
    settings.FASTFLOW_RUNNER_NETWORKS_ALLOWED = ("none",)
    pipelines_sync()
    assert Pipeline.objects.get(pipeline_name="backend").discovery_error == ""
    assert "not allowed" in synced(make_pipeline_dir, "on_bridge", "bridge").discovery_error


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("container:abc", "expected a Docker network name"),
        ("", "expected a Docker network name"),
        ("-net", "expected a Docker network name"),
        (5, "expected a string, got number"),
    ],
)
def test_a_malformed_network_is_an_error_naming_the_key(make_pipeline_dir, value, reason):
    error = synced(make_pipeline_dir, "malformed", value).discovery_error
    assert error.startswith("pipeline.json: key 'network': ")
    assert reason in error


def test_a_network_refused_since_discovery_keeps_the_run_from_starting(settings):
    pipeline = make_pipeline("was_allowed", pipeline_json={"network": "bridge"})
    run = claimed_run(pipeline)
    spec, _ = run_spec_build(run=run, refuse_not_runnable=True)
    assert spec.network == "bridge"

    settings.FASTFLOW_RUNNER_NETWORK = "none"
    settings.FASTFLOW_RUNNER_NETWORKS_ALLOWED = ("none",)  # changed; no re-sync yet
    with pytest.raises(RunSpecError, match="key 'network': network 'bridge' is not allowed"):
        run_spec_build(run=PipelineRun.objects.get(id=run.id), refuse_not_runnable=True)


def test_a_run_without_the_key_gets_the_installation_default(settings):
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    spec, _ = run_spec_build(run=claimed_run(make_pipeline("plain")), refuse_not_runnable=True)
    assert spec.network == "none"


# --- Docker: what the container gets ----------------------------------------------------------


@pytest.fixture
def docker(docker_engine, settings):
    use_runner_image(settings)
    settings.FASTFLOW_RUNNER_CA_BUNDLE = HOST_CA_BUNDLE if Path(HOST_CA_BUNDLE).is_file() else ""
    return get_executor("docker")


def _recorded_network() -> str:
    recorded = Path("/run/fastflow-runner-network")  # written by scripts/start-docker.sh
    return recorded.read_text().strip() if recorded.is_file() else "bridge"


@pytest.mark.docker
@pytest.mark.parametrize(("network", "interfaces"), [("none", "lo"), ("bridge", "eth0,lo")])
def test_the_container_is_on_the_runs_network(docker, make_pipeline_dir, network, interfaces):
    if network == "bridge" and _recorded_network() != "bridge":
        pytest.skip("this Docker engine has no working bridge network")
    folder = make_pipeline_dir("netcheck", SHOW_INTERFACES)
    spec = make_spec(folder, network=network, env={"LINGER": "3"})
    execution = docker.start(spec)
    result, waiter = wait_in_thread(execution)
    try:
        wait_for_line(spec, "interfaces")
        attrs = docker.client.api.inspect_container(execution.handle_id)
        assert attrs["HostConfig"]["NetworkMode"] == network
    finally:
        waiter.join(60)
        execution.cancel()
    assert result and result[0].succeeded, spec.log_file.read_text()
    assert user_lines(spec)[0] == f"interfaces {interfaces}"


@pytest.mark.docker
def test_a_none_pipeline_with_requirements_runs_its_prepared_environment(
    docker, settings, make_pipeline_dir
):
    settings.FASTFLOW_WARMUP_NETWORK = _recorded_network()
    folder = make_pipeline_dir(
        "offline_reqs", USES_IT, requirements=REQUIREMENT, pipeline_json={"network": "none"}
    )
    warmed = warm_cache(
        pipeline_name="offline_reqs", pipeline_dir=folder, python_version="3.11", executor=docker
    )
    assert warmed.ok, warmed.message

    spec = make_spec(folder, network="none")
    outcome = run_to_end(docker, spec)
    assert outcome.succeeded, spec.log_file.read_text()
    assert "answer = 42" in user_lines(spec)


@pytest.mark.docker
def test_a_none_pipeline_whose_requirements_were_never_warmed_fails_fast_and_says_why(
    docker, make_pipeline_dir
):
    folder = make_pipeline_dir("cold_reqs", USES_IT, requirements=NOT_IN_ANY_CACHE)
    spec = make_spec(folder, network="none")
    outcome = run_to_end(docker, spec)
    assert not outcome.succeeded
    assert NO_NETWORK_HINT in spec.log_file.read_text()


def test_warm_ups_get_a_network_even_when_runs_have_none(settings):
    settings.FASTFLOW_RUNNER_NETWORK = "none"
    settings.FASTFLOW_WARMUP_NETWORK = ""
    assert warmup_network() == "bridge"
    settings.FASTFLOW_RUNNER_NETWORK = "host"  # e.g. a Docker engine without NAT
    assert warmup_network() == "host"
    settings.FASTFLOW_WARMUP_NETWORK = "egress-proxy"
    assert warmup_network() == "egress-proxy"


def test_pipeline_json_network_round_trips_through_the_stored_spec(make_pipeline_dir):
    pipeline = synced(make_pipeline_dir, "stored", "none")
    assert json.loads(json.dumps(pipeline.metadata))["network"] == "none"
    assert pipeline.spec.to_dict()["network"] == "none"
