"""The environment a run receives: layering, masking, and clear errors."""

from __future__ import annotations

import pytest

from runs_app.environment import RunEnvironmentError, run_environment
from runs_app.services import run_enqueue
from secrets_app import crypto
from secrets_app.services import secret_set
from tests.helpers_engine import make_pipeline

pytestmark = pytest.mark.django_db

LAYERS = ("PIPE_ONLY", "CONFIG", "ENCRYPTED", "SECRET", "PARAM")


@pytest.fixture
def layered():
    """Each variable named in LAYERS is last set by the layer of that name. A parameter may
    replace defaults only (never a secret or an encrypted_env value: tests/test_reserved_env)."""
    secret_set(key="SECRET", value="from-secret")
    secret_set(key="PLAIN_SETTING", value="visible", is_parameter=True)
    return make_pipeline(
        "layered",
        pipeline_json={
            "default_env": {n: "from-pipeline" for n in LAYERS},
            "encrypted_env": {n: crypto.encrypt("from-encrypted") for n in ("ENCRYPTED", "SECRET")},
            "secrets": ["SECRET", "PLAIN_SETTING"],
            "schedules": [
                {
                    "id": "cfg",
                    "schedule_cron": "0 * * * *",
                    "default_env": {n: "from-config" for n in LAYERS[1:]},
                }
            ],
        },
    )


def test_layers_apply_lowest_to_highest(layered):
    run = run_enqueue(
        pipeline=layered, triggered_by="manual", run_config_id="cfg", parameters={"PARAM": "p"}
    )

    env = run_environment(run=run).env

    assert env["PIPE_ONLY"] == "from-pipeline"
    assert env["CONFIG"] == "from-config"
    assert env["ENCRYPTED"] == "from-encrypted"
    assert env["SECRET"] == "from-secret"
    assert env["PARAM"] == "p"
    assert env["FASTFLOW_RUN_ID"] == str(run.id)


def test_secret_values_are_masked_but_parameters_and_defaults_are_shown(layered):
    run = run_enqueue(
        pipeline=layered, triggered_by="manual", run_config_id="cfg", parameters={"PARAM": "p"}
    )

    environment = run_environment(run=run)

    assert environment.masked["ENCRYPTED"] == "***"
    assert environment.masked["SECRET"] == "***"
    assert environment.masked["PARAM"] == "p"
    assert environment.masked["CONFIG"] == "from-config"
    assert environment.masked["PLAIN_SETTING"] == "visible"  # a Secret row marked as parameter
    assert set(environment.mask_values) == {"from-encrypted", "from-secret"}


def test_short_secret_values_are_not_used_for_log_masking():
    secret_set(key="PIN", value="123")
    pipeline = make_pipeline("short", pipeline_json={"secrets": ["PIN"]})
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    environment = run_environment(run=run)

    assert environment.masked["PIN"] == "***"
    assert environment.mask_values == ()  # "123" would mask every 123 in the log


def test_a_missing_secret_is_a_clear_error():
    pipeline = make_pipeline("needs", pipeline_json={"secrets": ["DB_PASSWORD", "API_KEY"]})
    secret_set(key="API_KEY", value="present")
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")

    with pytest.raises(RunEnvironmentError, match="DB_PASSWORD") as caught:
        run_environment(run=run)

    assert "needs" in str(caught.value)
    assert "API_KEY" not in str(caught.value)


def test_a_value_that_stopped_decrypting_since_discovery_is_a_clear_error(settings):
    # Discovery refuses values no key decrypts; a key removed after the sync is caught here.
    from cryptography.fernet import Fernet

    pipeline = make_pipeline(
        "rotated", pipeline_json={"encrypted_env": {"TOKEN": crypto.encrypt("x")}}
    )
    run = run_enqueue(pipeline=pipeline, triggered_by="manual")
    settings.FASTFLOW_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(RunEnvironmentError, match="'TOKEN'.*cannot be decrypted"):
        run_environment(run=run)
