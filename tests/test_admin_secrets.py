"""The secrets admin treats values like passwords: write-only, never shown, never searchable."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from accounts_app.models import Role, User
from secrets_app import crypto
from secrets_app.admin import HIDDEN
from secrets_app.models import Secret
from secrets_app.services import secret_reveal, secret_set

pytestmark = pytest.mark.django_db

PLAINTEXT = "s3cr3t-Value-7f2a"
CHANGELIST = reverse("admin:secrets_app_secret_changelist")
ADD = reverse("admin:secrets_app_secret_add")


def change_url(key: str) -> str:
    return reverse("admin:secrets_app_secret_change", args=[key])


def client_for(role: str) -> Client:
    user = User.objects.create_user(username=f"user-{role.lower()}", role=role)
    client = Client()
    client.force_login(user, backend="accounts_app.backends.RoleBackend")
    return client


@pytest.fixture
def admin_client() -> Client:
    return client_for(Role.ADMIN)


def raw_value(key: str) -> str:
    return Secret.objects.values_list("value", flat=True).get(key=key)


def test_it_adds_a_secret_encrypted(admin_client):
    response = admin_client.post(ADD, {"key": "API_TOKEN", "value": PLAINTEXT})
    assert response.status_code == 302
    stored = raw_value("API_TOKEN")
    assert PLAINTEXT not in stored
    assert crypto.decrypt(stored) == PLAINTEXT


def test_it_adds_a_parameter_in_plaintext(admin_client):
    response = admin_client.post(ADD, {"key": "REGION", "value": "eu-west", "is_parameter": "on"})
    assert response.status_code == 302
    assert raw_value("REGION") == "eu-west"


def test_it_never_renders_a_secret_value_on_the_change_form(admin_client):
    secret = secret_set(key="API_TOKEN", value=PLAINTEXT)
    html = admin_client.get(change_url("API_TOKEN")).content.decode()
    assert PLAINTEXT not in html
    assert secret.value not in html
    assert HIDDEN in html
    assert 'type="password"' in html


def test_the_changelist_masks_secrets_and_shows_parameters(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    secret_set(key="REGION", value="eu-west", is_parameter=True)
    html = admin_client.get(CHANGELIST).content.decode()
    assert "API_TOKEN" in html
    assert PLAINTEXT not in html
    assert raw_value("API_TOKEN") not in html
    assert HIDDEN in html
    assert "eu-west" in html


def test_it_keeps_the_value_when_the_field_is_left_empty(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    before = raw_value("API_TOKEN")
    response = admin_client.post(change_url("API_TOKEN"), {"value": ""})
    assert response.status_code == 302
    assert raw_value("API_TOKEN") == before


def test_it_replaces_the_value_when_a_new_one_is_entered(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    response = admin_client.post(change_url("API_TOKEN"), {"value": "rotated-value"})
    assert response.status_code == 302
    assert crypto.decrypt(raw_value("API_TOKEN")) == "rotated-value"


def test_it_turns_a_secret_into_a_parameter_keeping_its_value(admin_client):
    secret_set(key="REGION", value="eu-west")
    response = admin_client.post(change_url("REGION"), {"value": "", "is_parameter": "on"})
    assert response.status_code == 302
    secret = Secret.objects.get(key="REGION")
    assert secret.is_parameter
    assert secret.value == "eu-west"


def test_it_turns_a_parameter_into_a_secret_and_encrypts_it(admin_client):
    secret_set(key="DB_PASSWORD", value=PLAINTEXT, is_parameter=True)
    response = admin_client.post(change_url("DB_PASSWORD"), {"value": ""})
    assert response.status_code == 302
    secret = Secret.objects.get(key="DB_PASSWORD")
    assert not secret.is_parameter
    assert PLAINTEXT not in secret.value
    assert secret_reveal(secret=secret) == PLAINTEXT


def test_it_asks_for_the_value_when_the_stored_one_cannot_be_decrypted(admin_client):
    Secret.objects.create(key="LOST", value="not-a-fernet-token", is_parameter=False)
    response = admin_client.post(change_url("LOST"), {"value": "", "is_parameter": "on"})
    assert response.status_code == 200
    assert "cannot be decrypted" in response.content.decode()
    assert Secret.objects.get(key="LOST").value == "not-a-fernet-token"


def test_it_requires_a_value_when_adding(admin_client):
    response = admin_client.post(ADD, {"key": "EMPTY", "value": ""})
    assert response.status_code == 200
    assert "Enter a value." in response.content.decode()
    assert not Secret.objects.filter(key="EMPTY").exists()


def test_it_rejects_a_key_that_is_not_an_environment_variable_name(admin_client):
    response = admin_client.post(ADD, {"key": "my key", "value": PLAINTEXT})
    assert response.status_code == 200
    assert "not a valid environment variable name" in response.content.decode()
    assert not Secret.objects.exists()


def test_it_rejects_a_duplicate_key_without_touching_the_existing_secret(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    before = raw_value("API_TOKEN")
    response = admin_client.post(ADD, {"key": "API_TOKEN", "value": "other"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert raw_value("API_TOKEN") == before


def test_the_key_cannot_be_renamed(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    admin_client.post(change_url("API_TOKEN"), {"key": "RENAMED", "value": ""})
    assert list(Secret.objects.values_list("key", flat=True)) == ["API_TOKEN"]


def test_it_refuses_filtering_on_the_value(admin_client):
    secret_set(key="REGION", value="eu-west", is_parameter=True)
    response = admin_client.get(CHANGELIST, {"value__startswith": "eu"})
    assert response.status_code == 400


def test_search_matches_keys_but_not_values(admin_client):
    secret_set(key="REGION", value="eu-west", is_parameter=True)
    by_key = admin_client.get(CHANGELIST, {"q": "REGI"})
    by_value = admin_client.get(CHANGELIST, {"q": "eu-west"})
    assert by_key.context["cl"].result_count == 1
    assert by_value.context["cl"].result_count == 0


def test_the_value_is_a_sensitive_post_parameter(admin_client):
    response = admin_client.post(ADD, {"key": "API_TOKEN", "value": PLAINTEXT})
    assert response.wsgi_request.sensitive_post_parameters == ("value",)


def test_the_admin_history_does_not_contain_the_value(admin_client):
    admin_client.post(ADD, {"key": "API_TOKEN", "value": PLAINTEXT})
    admin_client.post(change_url("API_TOKEN"), {"value": "second-" + PLAINTEXT})
    entries = list(LogEntry.objects.values_list("object_repr", "change_message"))
    assert len(entries) == 2
    assert all(PLAINTEXT not in repr_ + message for repr_, message in entries)


def test_deleting_through_the_admin_removes_the_secret(admin_client):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    url = reverse("admin:secrets_app_secret_delete", args=["API_TOKEN"])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Secret.objects.exists()


@pytest.mark.parametrize("role", [Role.WRITE, Role.READONLY])
def test_only_admins_can_see_secrets(role):
    secret_set(key="API_TOKEN", value=PLAINTEXT)
    client = client_for(role)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url("API_TOKEN")).status_code == 403
    assert client.post(ADD, {"key": "X", "value": "y"}).status_code == 403
    assert list(Secret.objects.values_list("key", flat=True)) == ["API_TOKEN"]
