from __future__ import annotations

import pytest

from secrets_app.models import Secret
from secrets_app.services import secret_reveal, secret_set
from tests.helpers_api import assert_error, client_for

pytestmark = pytest.mark.django_db

VALUE = "hunter2-very-secret"


@pytest.fixture
def admin():
    return client_for("ADMIN")


def test_it_never_returns_a_secret_value(admin):
    secret_set(key="DB_PASSWORD", value=VALUE)
    secret_set(key="REGION", value="eu-west-1", is_parameter=True)

    listed = admin.get("/api/secrets/")
    one = admin.get("/api/secrets/DB_PASSWORD/")

    rows = {row["key"]: row for row in listed.json()["results"]}
    assert rows["DB_PASSWORD"]["value"] is None
    assert rows["REGION"]["value"] == "eu-west-1"
    assert one.json()["value"] is None
    stored = Secret.objects.get(key="DB_PASSWORD").value
    for response in (listed, one):
        assert VALUE.encode() not in response.content
        assert stored.encode() not in response.content  # not even the ciphertext


def test_it_creates_a_secret_encrypted_at_rest(admin):
    response = admin.post("/api/secrets/", {"key": "API_TOKEN", "value": VALUE}, format="json")

    assert response.status_code == 201
    assert response.json() == {
        "key": "API_TOKEN",
        "is_parameter": False,
        "value": None,
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }
    secret = Secret.objects.get()
    assert secret.value != VALUE
    assert secret_reveal(secret=secret) == VALUE


def test_it_refuses_to_create_an_existing_key(admin):
    secret_set(key="API_TOKEN", value="old-value")

    response = admin.post("/api/secrets/", {"key": "API_TOKEN", "value": "new"}, format="json")

    assert_error(response, 409, "already_exists")
    assert secret_reveal(secret=Secret.objects.get()) == "old-value"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"key": "1BAD", "value": "x"}, "key"),
        ({"key": "HAS-DASH", "value": "x"}, "key"),
        ({"key": "OK"}, "value"),
        ({"key": "OK", "value": "a\x00b"}, "value"),
        ({"value": "x"}, "key"),
    ],
)
def test_it_rejects_invalid_secrets_with_the_field_named(admin, payload, field):
    body = assert_error(admin.post("/api/secrets/", payload, format="json"), 400, "invalid")

    assert field in body["fields"]
    assert Secret.objects.count() == 0


def test_it_replaces_or_creates_with_put(admin):
    created = admin.put("/api/secrets/API_TOKEN/", {"value": "first"}, format="json")
    replaced = admin.put(
        "/api/secrets/API_TOKEN/", {"value": "second", "is_parameter": True}, format="json"
    )

    assert created.status_code == 201
    assert replaced.status_code == 200
    assert replaced.json()["value"] == "second"  # now a readable parameter
    assert secret_reveal(secret=Secret.objects.get()) == "second"
    bad = admin.put("/api/secrets/9LIVES/", {"value": "x"}, format="json")
    assert "key" in assert_error(bad, 400, "invalid")["fields"]


def test_it_deletes_a_secret(admin):
    secret_set(key="API_TOKEN", value=VALUE)

    assert admin.delete("/api/secrets/API_TOKEN/").status_code == 204
    assert not Secret.objects.exists()
    assert_error(admin.delete("/api/secrets/API_TOKEN/"), 404, "not_found")
    assert_error(admin.get("/api/secrets/API_TOKEN/"), 404, "not_found")


@pytest.mark.parametrize("role", ["READONLY", "WRITE"])
def test_it_is_for_admins_only(role):
    secret_set(key="API_TOKEN", value=VALUE)
    client = client_for(role)

    assert_error(client.get("/api/secrets/"), 403, "permission_denied")
    assert_error(client.put("/api/secrets/API_TOKEN/", {"value": "x"}, format="json"), 403)
    assert secret_reveal(secret=Secret.objects.get()) == VALUE
