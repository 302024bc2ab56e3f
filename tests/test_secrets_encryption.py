"""Secret values are Fernet-encrypted at rest (MultiFernet: rotate keys), parameters are not."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from secrets_app import crypto
from secrets_app.models import Secret
from secrets_app.services import (
    MissingSecretError,
    secret_reveal,
    secret_set,
    secrets_resolve,
    secrets_rotate,
)
from tests.helpers_settings import config_error, fernet_key, production_env, run_django

PLAINTEXT = "hunter2-very-secret-Ωmega"


def raw_row(key: str) -> tuple:
    """The row as the database holds it, bypassing the ORM."""
    table = connection.ops.quote_name(Secret._meta.db_table)
    key_column = connection.ops.quote_name("key")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {key_column} = %s", [key])  # noqa: S608
        return cursor.fetchone()


def raw_value(key: str) -> str:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('value')} FROM {quote('secrets')} WHERE {quote('key')} = %s",  # noqa: S608
            [key],
        )
        return cursor.fetchone()[0]


@pytest.fixture
def two_keys(settings) -> tuple[str, str]:
    old, new = fernet_key(), fernet_key()
    settings.FASTFLOW_ENCRYPTION_KEYS = [old]
    return old, new


@pytest.mark.django_db
def test_no_secret_plaintext_is_stored_in_the_database():
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    row = raw_row("API_TOKEN")
    assert all(PLAINTEXT not in str(column) for column in row)
    stored = raw_value("API_TOKEN")
    assert stored.startswith("gAAAA")  # a Fernet token, version byte 0x80
    assert crypto.decrypt(stored) == PLAINTEXT


@pytest.mark.django_db
def test_parameters_are_stored_in_plaintext():
    secret_set(key="REGION", value="eu-west-1", is_parameter=True)
    assert raw_value("REGION") == "eu-west-1"


@pytest.mark.django_db
def test_the_same_value_encrypts_differently_each_time():
    secret_set(key="A", value=PLAINTEXT)
    secret_set(key="B", value=PLAINTEXT)
    assert raw_value("A") != raw_value("B")


@pytest.mark.django_db
def test_replacing_a_secret_with_a_parameter_stores_plaintext_and_back():
    secret_set(key="MODE", value="fast", is_parameter=True)
    secret_set(key="MODE", value="slow")
    assert raw_value("MODE") != "slow"
    assert secret_reveal(secret=Secret.objects.get(key="MODE")) == "slow"


@pytest.mark.django_db
def test_resolve_returns_plaintext_for_secrets_and_parameters():
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    secret_set(key="REGION", value="eu-west-1", is_parameter=True)
    assert secrets_resolve(keys=["API_TOKEN", "REGION"]) == {
        "API_TOKEN": PLAINTEXT,
        "REGION": "eu-west-1",
    }


@pytest.mark.django_db
def test_resolve_names_missing_keys():
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    with pytest.raises(MissingSecretError, match="secret\\(s\\) not found: NOPE, ZED"):
        secrets_resolve(keys=["API_TOKEN", "ZED", "NOPE"])


@pytest.mark.django_db
def test_resolve_reports_a_secret_no_key_can_decrypt(two_keys, settings):
    old, new = two_keys
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    settings.FASTFLOW_ENCRYPTION_KEYS = [new]
    with pytest.raises(MissingSecretError, match="'API_TOKEN' cannot be decrypted"):
        secrets_resolve(keys=["API_TOKEN"])


@pytest.mark.django_db
def test_the_first_key_encrypts_and_every_key_decrypts(two_keys, settings):
    old, new = two_keys
    secret_set(key="OLD", value="from-before")
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]
    secret_set(key="NEW", value="from-after")
    assert secrets_resolve(keys=["OLD", "NEW"]) == {"OLD": "from-before", "NEW": "from-after"}
    Fernet(new.encode()).decrypt(raw_value("NEW").encode())  # encrypted with the first key


@pytest.mark.django_db
def test_rotatesecrets_reencrypts_with_the_first_key(two_keys, settings, capsys):
    old, new = two_keys
    secret_set(key="A", value="alpha")
    secret_set(key="B", value="beta")
    secret_set(key="PARAM", value="plain", is_parameter=True)
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]

    call_command("rotatesecrets")

    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    assert raw_value("PARAM") == "plain"
    settings.FASTFLOW_ENCRYPTION_KEYS = [new]  # the old key can now be retired
    assert secrets_resolve(keys=["A", "B", "PARAM"]) == {
        "A": "alpha",
        "B": "beta",
        "PARAM": "plain",
    }


@pytest.mark.django_db
def test_rotatesecrets_changes_nothing_when_a_secret_cannot_be_decrypted(two_keys, settings):
    old, new = two_keys
    secret_set(key="A", value="alpha")
    Secret.objects.create(key="BROKEN", value="garbage", is_parameter=False)
    before = raw_value("A")
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]

    with pytest.raises(CommandError, match="no secret was changed"):
        call_command("rotatesecrets")

    assert raw_value("A") == before


@pytest.mark.django_db
def test_rotate_service_counts_only_secrets(two_keys, settings):
    old, new = two_keys
    secret_set(key="A", value="alpha")
    secret_set(key="P", value="plain", is_parameter=True)
    settings.FASTFLOW_ENCRYPTION_KEYS = [new, old]
    assert secrets_rotate() == 1


def test_development_without_a_key_generates_one_with_a_warning(tmp_path):
    show_key = "print(settings.FASTFLOW_ENCRYPTION_KEYS)"
    first = run_django(tmp_path, show_key, DEBUG="true")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "data" / "encryption.key"
    assert "FASTFLOW_ENCRYPTION_KEY is not set" in first.stderr
    assert str(key_file) in first.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_text().strip())  # a valid key

    second = run_django(tmp_path, show_key, DEBUG="true")
    assert second.returncode == 0, second.stderr
    assert "FASTFLOW_ENCRYPTION_KEY is not set" not in second.stderr
    assert second.stdout == first.stdout  # the generated key is reused


def test_production_without_a_key_refuses_to_start(tmp_path):
    result = run_django(tmp_path, **production_env(FASTFLOW_ENCRYPTION_KEY=""))
    assert result.returncode != 0
    assert config_error(result).startswith("FASTFLOW_ENCRYPTION_KEY: required when DEBUG is off")
    assert not (tmp_path / "data" / "encryption.key").exists()


@pytest.mark.parametrize("value", ["not-a-fernet-key", f"{Fernet.generate_key().decode()},short"])
def test_an_invalid_key_refuses_to_start(tmp_path, value):
    result = run_django(tmp_path, **production_env(FASTFLOW_ENCRYPTION_KEY=value))
    assert result.returncode != 0
    assert config_error(result).startswith("FASTFLOW_ENCRYPTION_KEY: every comma-separated key")


def test_a_comma_separated_key_list_is_accepted(tmp_path):
    keys = f"{fernet_key()}, {fernet_key()}"
    result = run_django(
        tmp_path,
        "print(len(settings.FASTFLOW_ENCRYPTION_KEYS))",
        **production_env(FASTFLOW_ENCRYPTION_KEY=keys),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
