"""FASTFLOW_RUN_STORAGE and the FASTFLOW_S3_* settings: local by default, a clear error naming
the variable for a bad value, the django-storages S3 backend built from them."""

from __future__ import annotations

import json

import pytest

from tests.helpers_settings import config_error, run_django

SHOW = (
    "import json\n"
    "print(json.dumps({'storage': settings.FASTFLOW_RUN_STORAGE,"
    " 'runs': settings.STORAGES.get(settings.RUN_OUTPUT_STORAGE)}))\n"
)


def test_the_default_is_the_local_data_dir_with_no_object_storage(tmp_path):
    result = run_django(tmp_path, SHOW)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"storage": "local", "runs": None}


def test_s3_builds_the_django_storages_backend_from_the_settings(tmp_path):
    result = run_django(
        tmp_path,
        SHOW,
        FASTFLOW_RUN_STORAGE="S3",
        FASTFLOW_S3_BUCKET="runs",
        FASTFLOW_S3_ENDPOINT_URL="http://minio:9000",
        FASTFLOW_S3_PREFIX="/team-a/",
        FASTFLOW_S3_ADDRESSING_STYLE="path",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout.splitlines()[-1])
    assert shown["storage"] == "s3"
    assert shown["runs"]["BACKEND"] == "storages.backends.s3.S3Storage"
    options = shown["runs"]["OPTIONS"]
    assert options["bucket_name"] == "runs"
    assert options["endpoint_url"] == "http://minio:9000"
    assert options["location"] == "team-a"
    assert options["addressing_style"] == "path"
    # Unset credentials: boto3's own chain (an instance or pod role), not empty strings.
    assert options["access_key"] is None and options["secret_key"] is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FASTFLOW_RUN_STORAGE": "nfs"}, "FASTFLOW_RUN_STORAGE: must be one of local, s3"),
        ({"FASTFLOW_RUN_STORAGE": "s3"}, "FASTFLOW_S3_BUCKET: required with"),
        (
            {
                "FASTFLOW_RUN_STORAGE": "s3",
                "FASTFLOW_S3_BUCKET": "runs",
                "FASTFLOW_S3_ENDPOINT_URL": "minio:9000",
            },
            "FASTFLOW_S3_ENDPOINT_URL: expected http(s)://host[:port]",
        ),
        (
            {
                "FASTFLOW_RUN_STORAGE": "s3",
                "FASTFLOW_S3_BUCKET": "runs",
                "FASTFLOW_S3_ADDRESSING_STYLE": "dns",
            },
            "FASTFLOW_S3_ADDRESSING_STYLE: must be one of auto, path, virtual",
        ),
        (
            {"FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS": "0"},
            "FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS: must be >= 0.05",
        ),
    ],
)
def test_a_bad_value_names_the_variable(tmp_path, env, expected):
    result = run_django(tmp_path, **env)
    assert result.returncode != 0
    assert config_error(result).startswith(expected), result.stderr
