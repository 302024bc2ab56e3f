"""An S3-compatible server on 127.0.0.1 for the run storage tests: moto in server mode, a real
HTTP endpoint that boto3 (the web side in the test process, engines in subprocesses) talks to."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import requests

from tests.helpers_gunicorn import free_port

ACCESS_KEY = "fastflow-test-key"
SECRET_KEY = "fastflow-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def s3_server_start(log: Path, *, timeout: float = 60.0) -> S3Server:
    """`moto.server` on a free port of 127.0.0.1; returns once it answers."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto's S3 server exited:\n{log.read_text(errors='replace')}")
        try:
            requests.get(endpoint, timeout=2)
            return S3Server(endpoint=endpoint, process=process)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto's S3 server did not answer on {endpoint}") from None
            time.sleep(0.1)


@dataclass
class ObjectStore:
    """One test's bucket, and the environment an engine subprocess needs to use it."""

    server: S3Server
    bucket: str
    env: dict[str, str]

    def names(self) -> list[str]:
        listing = self.server.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, name: str) -> bytes:
        return self.server.client().get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def delete(self, name: str) -> None:
        self.server.client().delete_object(Bucket=self.bucket, Key=name)


def object_store_env(server: S3Server, bucket: str, **extra: str) -> dict[str, str]:
    return {
        "FASTFLOW_RUN_STORAGE": "s3",
        "FASTFLOW_S3_BUCKET": bucket,
        "FASTFLOW_S3_ENDPOINT_URL": server.endpoint,
        "FASTFLOW_S3_REGION": REGION,
        "FASTFLOW_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "FASTFLOW_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "FASTFLOW_S3_ADDRESSING_STYLE": "path",
        "FASTFLOW_LIVE_OUTPUT_INTERVAL_SECONDS": "0.2",
        **extra,
    }


def new_bucket(server: S3Server) -> str:
    bucket = f"fastflow-runs-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    return bucket
