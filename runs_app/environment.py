"""The environment a run receives, and the masked copy stored on the run.

Lowest to highest precedence: pipeline `default_env`, the run configuration's `default_env`,
decrypted `encrypted_env`, the `Secret` rows named in `secrets`, then the run's parameters,
which may replace defaults only: a parameter named like a secret or an `encrypted_env` value,
or a reserved variable (`pipelines_app.env_names`), is refused.
Plaintext secrets only ever live in the returned `env` (handed to the executor), never in
`masked` (stored in `PipelineRun.env_vars`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines_app.models import Pipeline
from pipelines_app.spec import PipelineSpec
from runs_app.errors import InvalidRunRequest
from runs_app.models import PipelineRun
from runs_app.services import run_parameters_check_conflicts, run_parameters_validate
from secrets_app import crypto
from secrets_app.models import Secret
from secrets_app.services import MissingSecretError, secrets_resolve

MASK = "***"
MIN_MASK_LENGTH = 4


class RunEnvironmentError(Exception):
    """The environment cannot be built (a missing secret, undecryptable value); the message
    becomes the run's error."""


@dataclass(frozen=True)
class RunEnvironment:
    env: dict[str, str]
    masked: dict[str, str]
    mask_values: tuple[str, ...]


ENCRYPT_HINT = "encrypt it with `manage.py encryptvalue` or the admin's Encrypt a value page"


def encrypted_env_problems(spec: PipelineSpec, source: str) -> list[str]:
    """The discovery check (registered in RunsAppConfig.ready): every `encrypted_env` value,
    at the pipeline level and in each run configuration, must decrypt with a configured key,
    so a placeholder or a value of another installation breaks the pipeline before any run."""
    labelled = [("encrypted_env", spec.encrypted_env)]
    labelled += [
        (f"schedules[{index}].encrypted_env", config.encrypted_env)
        for index, config in enumerate(spec.run_configs)
    ]
    problems = []
    for label, values in labelled:
        for name, ciphertext in values.items():
            try:
                crypto.decrypt(ciphertext)
            except crypto.DecryptionError:
                problems.append(
                    f"{source}: key '{label}.{name}': cannot be decrypted with any configured "
                    f"FASTFLOW_ENCRYPTION_KEY ({ENCRYPT_HINT})"
                )
    return problems


def run_environment(*, run: PipelineRun) -> RunEnvironment:
    pipeline: Pipeline = run.pipeline
    spec = pipeline.spec
    try:
        effective = spec.effective(run.run_config_id or None)
    except KeyError:
        raise RunEnvironmentError(
            f"pipeline '{pipeline.pipeline_name}' has no run configuration "
            f"{run.run_config_id!r} any more"
        ) from None

    env: dict[str, str] = {
        "FASTFLOW_RUN_ID": str(run.id),
        "FASTFLOW_PIPELINE": pipeline.pipeline_name,
        "FASTFLOW_RUN_CONFIG_ID": run.run_config_id,
        "FASTFLOW_TRIGGERED_BY": run.triggered_by,
    }
    if run.git_commit:
        env["FASTFLOW_GIT_COMMIT"] = run.git_commit
    secret_names: set[str] = set()
    env.update(effective.default_env)

    for name, ciphertext in effective.encrypted_env.items():
        try:
            env[name] = crypto.decrypt(ciphertext)
        except crypto.DecryptionError:
            raise RunEnvironmentError(
                f"encrypted_env value {name!r} of pipeline '{pipeline.pipeline_name}' cannot be "
                "decrypted with any configured FASTFLOW_ENCRYPTION_KEY"
            ) from None
        secret_names.add(name)

    wanted = list(dict.fromkeys(spec.secrets))
    if wanted:
        try:
            values = secrets_resolve(keys=wanted)
        except MissingSecretError as exc:
            raise RunEnvironmentError(
                f"pipeline '{pipeline.pipeline_name}' needs {exc}; add it under Secrets"
            ) from None
        plain = set(
            Secret.objects.filter(key__in=wanted, is_parameter=True).values_list("key", flat=True)
        )
        env.update(values)
        secret_names |= set(values) - plain
        secret_names -= plain

    # Checked again here: the run may have been queued before this check existed, or before
    # pipeline.json gained a secret of the same name.
    try:
        parameters = run_parameters_validate(parameters=run.parameters)
        run_parameters_check_conflicts(
            spec=spec, run_config_id=run.run_config_id, parameters=parameters
        )
    except InvalidRunRequest as exc:
        raise RunEnvironmentError(f"refused to start: {exc}") from None
    env.update(parameters)

    masked = {name: (MASK if name in secret_names else value) for name, value in env.items()}
    mask_values = tuple(
        sorted(
            {env[name] for name in secret_names if len(env[name]) >= MIN_MASK_LENGTH},
            key=len,
            reverse=True,
        )
    )
    return RunEnvironment(env=env, masked=masked, mask_values=mask_values)
