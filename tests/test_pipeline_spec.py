"""The parsed pipeline.json: every key, every error, cron semantics, retries, round trips."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest

from pipelines_app.spec import (
    DownstreamTrigger,
    PipelineSpec,
    RetryStrategy,
    RunConfig,
    SpecError,
    cron_trigger,
    next_fire_times,
    parse_memory,
    parse_pipeline_json,
    validate_cron,
)
from tests.helpers_pipelines import OTHER_CIPHERTEXT, TOKEN_CIPHERTEXT, full_pipeline_json

GIB = 1024**3
MIB = 1024**2


def parse(data: object) -> PipelineSpec:
    return parse_pipeline_json(data, source="pipeline.json").spec


def errors_of(data: object) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_pipeline_json(data, source="pipeline.json")
    return caught.value.errors


# --- every key --------------------------------------------------------------------------------


def test_it_parses_every_pipeline_level_key() -> None:
    spec = parse(full_pipeline_json())

    assert spec.description == "Nightly export"
    assert spec.tags == ("etl", "nightly")
    assert spec.enabled is False
    assert spec.type == "script"
    assert spec.python_version == "3.12"
    assert spec.cpu_hard_limit == 2.0
    assert spec.mem_hard_limit == int(1.5 * GIB)
    assert spec.cpu_soft_limit == 1.5
    assert spec.mem_soft_limit == 512 * MIB
    assert spec.timeout == 900
    assert spec.retry_attempts == 3
    assert spec.retry_strategy == RetryStrategy(
        type="exponential_backoff", initial_delay=10, multiplier=3, max_delay=200
    )
    assert dict(spec.default_env) == {"MODE": "full", "LEVEL": "info"}
    assert dict(spec.encrypted_env) == {"TOKEN": TOKEN_CIPHERTEXT}
    assert spec.secrets == ("DB_PASSWORD", "API_KEY")
    assert spec.webhook_key == "pipeline-level-webhook-key-0001"
    assert spec.webhook_secret_env == "WEBHOOK_HMAC"
    assert spec.schedule_start == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.schedule_end == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert spec.run_once_at == datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
    assert spec.max_instances == 2
    assert spec.downstream_triggers == (
        DownstreamTrigger(
            pipeline="report", on_success=True, on_failure=True, run_config_id="daily"
        ),
    )
    assert [rc.id for rc in spec.run_configs] == ["nightly", "hourly"]
    assert spec.restart_on_crash is True
    assert spec.restart_cooldown == 15
    assert spec.restart_interval == "0 4 * * *"


def test_it_parses_every_run_configuration_key() -> None:
    nightly = parse(full_pipeline_json()).run_config("nightly")

    assert nightly == RunConfig(
        id="nightly",
        schedule_cron="0 2 * * *",
        schedule_start=datetime(2026, 2, 1, tzinfo=UTC),
        schedule_end=datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
        enabled=False,
        default_env={"MODE": "nightly"},
        encrypted_env={"TOKEN": OTHER_CIPHERTEXT},
        cpu_hard_limit=4,
        mem_hard_limit=2 * GIB,
        cpu_soft_limit=3,
        mem_soft_limit=GIB,
        timeout=0,
        retry_attempts=1,
        retry_strategy=RetryStrategy(type="custom_schedule", delays=(5, 10)),
        webhook_key="nightly-run-config-webhook-key",
    )
    hourly = parse(full_pipeline_json()).run_config("hourly")
    assert hourly.schedule_interval_seconds == 3600
    assert hourly.is_scheduled and hourly.enabled


def test_it_parses_a_top_level_cron_and_interval_schedule() -> None:
    assert parse({"schedule_cron": "*/5  * * * *"}).schedule_cron == "*/5 * * * *"
    spec = parse({"schedule_interval_seconds": 90, "schedule_start": "2026-01-01T08:00:00"})
    assert spec.schedule_interval_seconds == 90
    assert spec.schedule_start == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert spec.schedule_count == 1


def test_an_empty_object_gives_all_defaults() -> None:
    result = parse_pipeline_json({}, source="pipeline.json")

    assert result.spec == PipelineSpec()
    assert result.warnings == []
    spec = result.spec
    assert (spec.enabled, spec.type, spec.timeout, spec.retry_attempts) == (True, "script", None, 0)
    assert spec.retry_strategy == RetryStrategy(type="fixed_delay", delay=60)
    assert (spec.restart_on_crash, spec.restart_cooldown, spec.schedule_count) == (False, 60, 0)


def test_null_values_mean_the_default() -> None:
    spec = parse({"timeout": None, "tags": None, "webhook_key": None, "schedule_cron": ""})
    assert (spec.timeout, spec.tags, spec.webhook_key, spec.schedule_cron) == (None, (), None, None)


def test_tags_and_secrets_are_stripped_and_deduplicated() -> None:
    spec = parse({"tags": [" etl", "etl", "daily "], "secrets": ["A", "A", "B"]})
    assert spec.tags == ("etl", "daily")
    assert spec.secrets == ("A", "B")


def test_an_empty_webhook_key_turns_webhooks_off() -> None:
    assert parse({"webhook_key": ""}).webhook_key is None


def test_restart_interval_accepts_seconds_or_cron() -> None:
    assert parse({"restart_interval": 600}).restart_interval == "600"
    assert parse({"restart_interval": "600"}).restart_interval == "600"
    assert parse({"restart_interval": "0 * * * *"}).restart_interval == "0 * * * *"
    assert "restart_interval" in errors_of({"restart_interval": "every hour"})[0]


def test_a_run_configuration_without_a_schedule_is_kept_for_manual_runs() -> None:
    spec = parse({"schedules": [{"id": "manual_only", "default_env": {"A": "1"}}]})
    config = spec.run_config("manual_only")
    assert config is not None and not config.is_scheduled
    assert spec.schedule_count == 0


# --- memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * MIB),
        ("1g", GIB),
        ("1.5g", int(1.5 * GIB)),
        ("1024k", MIB),
        ("2G", 2 * GIB),
        ("256MB", 256 * MIB),
        ("1Gi", GIB),
        ("100", 100),
        (" 64 m ", 64 * MIB),
        (7 * MIB, 7 * MIB),
    ],
)
def test_it_parses_memory_sizes(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "m", "1.5x", "-1g", "0", "1,5g", "lots", True, [1]])
def test_it_rejects_bad_memory_sizes(text: object) -> None:
    with pytest.raises(SpecError):
        parse_memory(text)


def test_a_fractional_memory_limit_is_stored_in_bytes() -> None:
    # The original crashed on "1.5g" (int() on the number part).
    assert parse({"mem_soft_limit": "1.5g"}).to_dict()["mem_soft_limit"] == 1610612736


def test_a_hard_memory_limit_below_dockers_minimum_is_an_error() -> None:
    assert errors_of({"mem_hard_limit": "4m"}) == [
        "pipeline.json: key 'mem_hard_limit': must be at least 6m (Docker's minimum), got 4194304"
    ]


# --- cron ---------------------------------------------------------------------------------------

JAN_1_2026 = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday


def weekdays(expr: str, count: int = 7) -> list[str]:
    return [t.strftime("%a") for t in next_fire_times(cron_trigger(expr), count, JAN_1_2026)]


def test_day_of_week_zero_is_sunday() -> None:
    (first,) = next_fire_times(cron_trigger("0 0 * * 0"), 1, JAN_1_2026)
    assert first == datetime(2026, 1, 4, tzinfo=UTC)
    assert first.strftime("%A") == "Sunday"


@pytest.mark.parametrize(
    ("expr", "days"),
    [
        ("0 0 * * 7", ["Sun", "Sun"]),
        ("0 0 * * 1", ["Mon", "Mon"]),
        ("0 0 * * 6", ["Sat", "Sat"]),
        ("0 0 * * 1-5", ["Thu", "Fri", "Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 0 * * 0,6", ["Sat", "Sun", "Sat", "Sun"]),
        ("0 0 * * 5-7", ["Fri", "Sat", "Sun", "Fri"]),
        ("0 0 * * */2", ["Thu", "Sat", "Sun", "Tue", "Thu"]),
        ("0 0 * * mon-wed", ["Mon", "Tue", "Wed", "Mon"]),
        ("0 0 * * SUN", ["Sun", "Sun"]),
    ],
)
def test_day_of_week_follows_standard_cron(expr: str, days: list[str]) -> None:
    assert weekdays(expr, len(days)) == days


def test_cron_is_evaluated_in_utc() -> None:
    times = next_fire_times(cron_trigger("30 14 * * *"), 2, JAN_1_2026)
    assert times == [
        datetime(2026, 1, 1, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 2, 14, 30, tzinfo=UTC),
    ]
    assert all(t.tzinfo == UTC for t in times)


def test_next_fire_times_respect_the_window() -> None:
    trigger = cron_trigger(
        "0 12 * * *",
        start=datetime(2026, 1, 10, tzinfo=UTC),
        end=datetime(2026, 1, 12, 23, 0, tzinfo=UTC),
    )
    assert [t.day for t in next_fire_times(trigger, 5, JAN_1_2026)] == [10, 11, 12]


def test_next_fire_times_are_strictly_increasing() -> None:
    times = next_fire_times(cron_trigger("*/5 * * * *"), 4, JAN_1_2026)
    assert [t.minute for t in times] == [0, 5, 10, 15]


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("* * *", "expected 5 fields, got 3"),
        ("* * * * * *", "expected 5 fields, got 6"),
        ("61 * * * *", "minute field '61'"),
        ("0 24 * * *", "hour field '24'"),
        ("0 0 32 * *", "day-of-month field '32'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day-of-week value 8 is out of range"),
        ("0 0 * * 5-1", "runs backwards"),
        ("0 0 * * funday", "unknown value 'funday'"),
        ("0 0 * * */0", "the step must be a positive integer"),
        ("0 0 1 * 1", "both restricted"),
        ("x * * * *", "minute field 'x'"),
    ],
)
def test_it_rejects_bad_cron_expressions_with_the_reason(expr: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason.replace("*", r"\*")):
        validate_cron(expr)


def test_a_bad_cron_in_pipeline_json_names_the_file_and_key() -> None:
    assert errors_of({"schedule_cron": "0 0 *"}) == [
        "pipeline.json: key 'schedule_cron': expected 5 fields, got 3"
    ]


# --- retries ------------------------------------------------------------------------------------


def test_fixed_delay_is_the_same_for_every_attempt() -> None:
    strategy = RetryStrategy(type="fixed_delay", delay=7)
    assert [strategy.delay_for(n) for n in (1, 2, 10)] == [7, 7, 7]


def test_exponential_backoff_starts_at_the_initial_delay_and_is_capped() -> None:
    strategy = RetryStrategy(
        type="exponential_backoff", initial_delay=10, multiplier=2, max_delay=50
    )
    assert [strategy.delay_for(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 50]
    assert strategy.delay_for(100_000) == 50


def test_custom_schedule_repeats_its_last_delay() -> None:
    strategy = RetryStrategy(type="custom_schedule", delays=(5, 30, 120))
    assert [strategy.delay_for(n) for n in (1, 2, 3, 4, 9)] == [5, 30, 120, 120, 120]


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryStrategy().delay_for(0)


def test_retry_strategy_defaults_per_type() -> None:
    assert parse({"retry_strategy": {"type": "fixed_delay"}}).retry_strategy.delay_for(1) == 60
    backoff = parse({"retry_strategy": {"type": "exponential_backoff"}}).retry_strategy
    assert [backoff.delay_for(n) for n in (1, 2, 7)] == [60, 120, 3600]


def test_retry_fields_of_another_type_are_warned_about() -> None:
    result = parse_pipeline_json(
        {"retry_strategy": {"type": "fixed_delay", "delay": 5, "delays": [1]}},
        source="pipeline.json",
    )
    assert result.spec.retry_strategy == RetryStrategy(delay=5)
    assert result.warnings == [
        "pipeline.json: key 'retry_strategy.delays': does not apply to 'fixed_delay', ignored"
    ]


# --- to_dict / from_dict ------------------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip() -> None:
    spec = parse(full_pipeline_json())
    data = spec.to_dict()

    assert PipelineSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert data["mem_hard_limit"] == 1610612736
    assert data["run_once_at"] == "2026-06-01T10:30:00+00:00"
    assert data["schedules"][0]["retry_strategy"] == {"type": "custom_schedule", "delays": [5, 10]}


def test_from_dict_of_an_empty_dict_gives_defaults() -> None:
    assert PipelineSpec.from_dict({}) == PipelineSpec()
    assert PipelineSpec.from_dict(None) == PipelineSpec()


def test_the_spec_is_immutable() -> None:
    spec = parse(full_pipeline_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.timeout = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.default_env["MODE"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.run_configs[0].default_env["MODE"] = "changed"  # type: ignore[index]


# --- effective configuration and webhooks -------------------------------------------------------


def test_effective_merges_a_run_configuration_over_the_pipeline() -> None:
    spec = parse(full_pipeline_json())

    nightly = spec.effective("nightly")
    assert nightly.timeout is None  # 0 in the run configuration: no limit
    assert (nightly.cpu_hard_limit, nightly.mem_hard_limit) == (4, 2 * GIB)
    assert nightly.retry_attempts == 1
    assert nightly.retry_strategy.type == "custom_schedule"
    assert nightly.default_env == {"MODE": "nightly", "LEVEL": "info"}
    assert nightly.encrypted_env == {"TOKEN": OTHER_CIPHERTEXT}

    hourly = spec.effective("hourly")
    assert (hourly.timeout, hourly.retry_attempts, hourly.mem_soft_limit) == (900, 3, 512 * MIB)
    assert hourly.retry_strategy == spec.retry_strategy


def test_effective_without_a_run_configuration_is_the_pipeline_level() -> None:
    spec = parse({"timeout": 0, "default_env": {"A": "1"}})
    for config in (spec.effective(), spec.effective(None), spec.effective("")):
        assert config.timeout is None
        assert config.default_env == {"A": "1"}
        assert config.retry_attempts == 0


def test_effective_refuses_an_unknown_run_configuration() -> None:
    with pytest.raises(KeyError):
        parse(full_pipeline_json()).effective("weekly")


def test_webhook_target_matches_the_pipeline_and_run_configuration_keys() -> None:
    spec = parse(full_pipeline_json())
    assert spec.webhook_target("pipeline-level-webhook-key-0001") == (True, None)
    assert spec.webhook_target("nightly-run-config-webhook-key") == (True, "nightly")
    assert spec.webhook_target("nightly-run-config-webhook-kez") == (False, None)
    assert spec.webhook_target("") == (False, None)
    assert PipelineSpec().webhook_target("anything") == (False, None)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"description": 5}, "key 'description': expected a string, got number"),
        ({"tags": "etl"}, "key 'tags': expected an array of strings, got string"),
        ({"tags": ["ok", 3]}, "key 'tags': item 1 must be a non-empty string"),
        ({"enabled": "false"}, "key 'enabled': expected true or false, got string"),
        ({"type": "lab"}, "key 'type': expected one of 'script', 'notebook', got 'lab'"),
        ({"python_version": 3.1}, "key 'python_version': expected a string, got number"),
        ({"python_version": "2.7"}, "key 'python_version': expected a Python 3 version"),
        ({"cpu_hard_limit": 0}, "key 'cpu_hard_limit': must be > 0, got 0"),
        ({"cpu_soft_limit": "1"}, "key 'cpu_soft_limit': expected a number, got string"),
        ({"mem_hard_limit": "1x"}, "key 'mem_hard_limit': invalid size '1x'"),
        ({"mem_soft_limit": False}, "key 'mem_soft_limit': expected a size"),
        ({"timeout": "30"}, "key 'timeout': expected a whole number, got string"),
        ({"timeout": 1.5}, "key 'timeout': expected a whole number, got 1.5"),
        ({"timeout": -1}, "key 'timeout': must be >= 0, got -1"),
        ({"retry_attempts": True}, "key 'retry_attempts': expected a whole number, got boolean"),
        ({"retry_strategy": "fast"}, "key 'retry_strategy': expected an object, got string"),
        ({"retry_strategy": {"type": "linear"}}, "key 'retry_strategy.type': expected one of"),
        (
            {"retry_strategy": {"type": "custom_schedule"}},
            "key 'retry_strategy.delays': custom_schedule needs a non-empty array",
        ),
        (
            {"retry_strategy": {"type": "custom_schedule", "delays": []}},
            "key 'retry_strategy.delays': expected a non-empty array of seconds",
        ),
        (
            {"retry_strategy": {"type": "exponential_backoff", "multiplier": 0.5}},
            "key 'retry_strategy.multiplier': must be >= 1",
        ),
        ({"default_env": ["A=1"]}, "key 'default_env': expected an object"),
        ({"default_env": {"COUNT": 3}}, "key 'default_env': value of 'COUNT' must be a string"),
        ({"default_env": {"A=B": "x"}}, "key 'default_env': invalid variable name 'A=B'"),
        ({"encrypted_env": {"K": None}}, "key 'encrypted_env': value of 'K' must be a string"),
        ({"secrets": "DB"}, "key 'secrets': expected an array of strings, got string"),
        ({"webhook_key": "has space"}, "key 'webhook_key': must be at most 255 characters"),
        ({"webhook_key": 123}, "key 'webhook_key': expected a string, got number"),
        ({"webhook_secret_env": ""}, "key 'webhook_secret_env': expected the name of a secret"),
        ({"schedule_cron": 5}, "key 'schedule_cron': expected a string, got number"),
        ({"schedule_interval_seconds": 0}, "key 'schedule_interval_seconds': must be >= 1"),
        ({"schedule_start": "yesterday"}, "key 'schedule_start': invalid ISO 8601"),
        ({"schedule_end": 20260101}, "key 'schedule_end': expected an ISO 8601 date"),
        ({"run_once_at": "2026-13-01"}, "key 'run_once_at': invalid ISO 8601"),
        ({"max_instances": 0}, "key 'max_instances': must be >= 1, got 0"),
        (
            {"downstream_triggers": {"pipeline": "b"}},
            "key 'downstream_triggers': expected an array",
        ),
        ({"downstream_triggers": [{}]}, "key 'downstream_triggers[0].pipeline': is required"),
        (
            {"downstream_triggers": [{"pipeline": "../etc"}]},
            "key 'downstream_triggers[0].pipeline': '../etc' is not a valid name",
        ),
        (
            {"downstream_triggers": [{"pipeline": "b", "on_route": " ok"}]},
            "key 'downstream_triggers[0].on_route': expected a route label",
        ),
        (
            {"downstream_triggers": [{"pipeline": "b"}, {"pipeline": "b"}]},
            "key 'downstream_triggers[1]': duplicates an earlier trigger of 'b'",
        ),
        ({"schedules": {"id": "a"}}, "key 'schedules': expected an array of objects"),
        ({"schedules": ["a"]}, "key 'schedules[0]': expected an object, got string"),
        ({"schedules": [{"schedule_cron": "* * * * *"}]}, "key 'schedules[0].id': is required"),
        ({"schedules": [{"id": "a b"}]}, "key 'schedules[0].id': 'a b' is not a valid name"),
        (
            {"schedules": [{"id": "a"}, {"id": "a"}]},
            "key 'schedules[1].id': 'a' is used by an earlier entry",
        ),
        (
            {"schedules": [{"id": "a", "timeout": "1h"}]},
            "key 'schedules[0].timeout': expected a whole number, got string",
        ),
        (
            {"schedules": [{"id": "a", "schedule_cron": "0 0 * *"}]},
            "key 'schedules[0].schedule_cron': expected 5 fields, got 4",
        ),
        ({"restart_on_crash": 1}, "key 'restart_on_crash': expected true or false, got number"),
        ({"restart_cooldown": -5}, "key 'restart_cooldown': must be >= 0, got -5"),
        (
            {"schedule_cron": "0 * * * *", "schedule_interval_seconds": 60},
            "key 'schedule_interval_seconds': set either schedule_cron or "
            "schedule_interval_seconds, not both",
        ),
        (
            {"schedule_cron": "0 * * * *", "schedules": [{"id": "a"}]},
            "key 'schedules': cannot be combined with a top-level schedule_cron",
        ),
        (
            {
                "schedule_interval_seconds": 60,
                "schedule_start": "2026-02-01",
                "schedule_end": "2026-01-01",
            },
            "key 'schedule_end': must be after schedule_start",
        ),
    ],
)
def test_each_bad_value_names_the_file_the_key_and_the_reason(data: dict, message: str) -> None:
    errors = errors_of(data)
    assert any(e.startswith(f"pipeline.json: {message}") for e in errors), errors


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipeline_json({"timeout": "x", "tags": 1, "schedule_cron": "bad"}, source="etl.json")
    assert len(caught.value.errors) == 3
    assert str(caught.value) == "; ".join(caught.value.errors)
    assert all(e.startswith("etl.json: key '") for e in caught.value.errors)


@pytest.mark.parametrize("data", [[], "text", 3, None])
def test_the_top_level_must_be_an_object(data: object) -> None:
    with pytest.raises(SpecError, match="pipeline.json: expected a JSON object at the top level"):
        parse_pipeline_json(data, source="pipeline.json")


def test_a_webhook_key_shared_by_the_pipeline_and_a_schedule_is_an_error() -> None:
    key = "shared-webhook-key-0123456789"
    errors = errors_of({"webhook_key": key, "schedules": [{"id": "a", "webhook_key": key}]})
    assert errors == [
        "pipeline.json: key 'schedules[0].webhook_key': duplicates the webhook_key of "
        "'webhook_key' (keys must be unique)"
    ]
    assert key not in errors[0]


def test_a_webhook_key_shared_by_two_schedules_is_an_error() -> None:
    key = "shared-webhook-key-0123456789"
    errors = errors_of(
        {"schedules": [{"id": "a", "webhook_key": key}, {"id": "b", "webhook_key": key}]}
    )
    assert errors == [
        "pipeline.json: key 'schedules[1].webhook_key': duplicates the webhook_key of "
        "'schedules[0].webhook_key' (keys must be unique)"
    ]


# --- warnings -----------------------------------------------------------------------------------


def test_unknown_keys_are_warnings_with_a_suggestion() -> None:
    result = parse_pipeline_json(
        {"schedule_crom": "* * * * *", "owner": "ops", "schedules": [{"id": "a", "timout": 5}]},
        source="pipeline.json",
    )
    assert result.spec.schedule_cron is None
    assert result.warnings == [
        "pipeline.json: key 'schedule_crom': unknown key, ignored; did you mean 'schedule_cron'?",
        "pipeline.json: key 'owner': unknown key, ignored",
        "pipeline.json: key 'schedules[0].timout': unknown key, ignored; did you mean 'timeout'?",
    ]


def test_questionable_but_valid_settings_are_warnings() -> None:
    result = parse_pipeline_json(
        {
            "webhook_key": "short",
            "schedule_start": "2026-01-01",
            "cpu_soft_limit": 4,
            "cpu_hard_limit": 2,
            "downstream_triggers": [{"pipeline": "b", "on_success": False}],
        },
        source="pipeline.json",
    )
    assert len(result.warnings) == 4
    joined = "\n".join(result.warnings)
    assert "'webhook_key': is shorter than 16 characters" in joined
    assert "'schedule_start': has no effect without schedule_cron" in joined
    assert "'cpu_soft_limit': is above cpu_hard_limit" in joined
    assert "'downstream_triggers[0]': on_success and on_failure are both false" in joined


def test_dates_accept_offsets_and_naive_values_as_utc() -> None:
    spec = parse(
        {
            "schedule_cron": "0 * * * *",
            "schedule_start": "2026-03-01T10:00:00+01:00",
            "schedule_end": "2026-03-02T10:00:00",
            "run_once_at": "2026-03-05T00:00:00Z",
        }
    )
    assert spec.schedule_start == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert spec.schedule_end == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert spec.run_once_at == datetime(2026, 3, 5, tzinfo=UTC)
