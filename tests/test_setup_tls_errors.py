"""Behind a TLS-intercepting proxy uv cannot verify the package index: the run's error says so
and names FASTFLOW_RUNNER_CA_BUNDLE, instead of "pipeline exited with code 2".

The index is a real HTTPS server on 127.0.0.1 with a self-signed certificate (what such a
proxy looks like to a client without its CA); Docker runs reach it over the host network.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runs_app.engine.executors import get_executor
from runs_app.engine.warmup import warm_cache
from runs_app.outcome import CA_BUNDLE_HINT
from tests.helpers_executor import log_lines, make_spec, run_to_end, use_runner_image

HINT_START = CA_BUNDLE_HINT.split("(")[0]


def _certificate(subject: str, issuer: str, public_key, signing_key, *, ca: bool):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def proxy_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA (what the proxy's operator distributes) and the server certificate it
    signed for 127.0.0.1: (CA bundle, server certificate, server key)."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate("proxy CA", "proxy CA", ca_key.public_key(), ca_key, ca=True)
    server = _certificate("127.0.0.1", "proxy CA", server_key.public_key(), ca_key, ca=False)
    ca_file, cert_file, key_file = (
        directory / "proxy-ca.pem",
        directory / "server.pem",
        directory / "server.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ca_file.chmod(0o644)  # the runner uid reads the mounted bundle
    return ca_file, cert_file, key_file


class NoPackages(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def intercepting_index(directory: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS package index on 127.0.0.1 whose certificate nobody trusts by default."""
    ca_file, cert_file, key_file = proxy_certificates(directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoPackages)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/simple", ca_file
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["docker", "local"])
def executor(request, settings):
    settings.FASTFLOW_EXECUTOR = request.param
    if request.param == "docker":
        request.getfixturevalue("docker_engine")
        use_runner_image(settings)
        settings.FASTFLOW_RUNNER_NETWORK = "host"  # reaches the index on 127.0.0.1
    settings.FASTFLOW_RUNNER_CA_BUNDLE = ""
    return get_executor()


def run_with_index(executor, make_pipeline_dir, index_url: str, name: str):
    # A package name nobody has: uv must ask the index (no cache hit can skip the TLS check).
    folder = make_pipeline_dir(name, "print('never runs')\n", requirements=f"{name}-pkg\n")
    spec = make_spec(folder, env={"UV_INDEX_URL": index_url})
    return spec, run_to_end(executor, spec)


def test_an_untrusted_index_certificate_fails_the_run_naming_the_ca_bundle_setting(
    executor, make_pipeline_dir, tmp_path
):
    with intercepting_index(tmp_path) as (index_url, _):
        spec, outcome = run_with_index(executor, make_pipeline_dir, index_url, "tls_untrusted")

    assert not outcome.succeeded and outcome.exit_code
    assert outcome.error.startswith(HINT_START), outcome.error
    assert "FASTFLOW_RUNNER_CA_BUNDLE" in outcome.error
    assert "certificate" in outcome.error.split("(", 1)[1]  # uv's own words, quoted
    assert outcome.setup_duration is None
    assert any("FASTFLOW_RUNNER_CA_BUNDLE" in line for line in log_lines(spec))


def test_with_the_ca_bundle_set_the_certificate_verifies_and_no_hint_is_given(
    executor, make_pipeline_dir, settings, tmp_path
):
    with intercepting_index(tmp_path) as (index_url, ca_file):
        settings.FASTFLOW_RUNNER_CA_BUNDLE = str(ca_file)
        spec, outcome = run_with_index(executor, make_pipeline_dir, index_url, "tls_trusted")

    # TLS works now; the (empty) index has no such package, which is a different failure.
    assert not outcome.succeeded
    assert "FASTFLOW_RUNNER_CA_BUNDLE" not in outcome.error
    assert not any("certificate" in line.lower() for line in log_lines(spec)), log_lines(spec)


def test_a_pipeline_printing_certificate_errors_itself_keeps_its_exit_code(
    executor, make_pipeline_dir
):
    folder = make_pipeline_dir(
        "prints_tls_words",
        "import sys\nprint('invalid peer certificate: UnknownIssuer')\nsys.exit(3)\n",
    )
    spec = make_spec(folder)

    outcome = run_to_end(executor, spec)

    assert outcome.exit_code == 3
    assert outcome.error == "pipeline exited with code 3"


def test_a_cache_warm_up_failing_on_the_certificate_names_the_setting(
    make_pipeline_dir, tmp_path, settings, monkeypatch
):
    # The local warm-up uses the engine's own index settings (the Docker one the default index).
    settings.FASTFLOW_EXECUTOR = "local"
    with intercepting_index(tmp_path) as (index_url, _):
        monkeypatch.setenv("UV_INDEX_URL", index_url)
        folder = make_pipeline_dir("tls_warmup", requirements="tls-warmup-pkg\n")
        result = warm_cache(
            pipeline_name=folder.name,
            pipeline_dir=folder,
            python_version=settings.FASTFLOW_DEFAULT_PYTHON_VERSION,
            executor=get_executor(),
        )

    assert not result.ok
    assert "uv pip compile" in result.message
    assert "set FASTFLOW_RUNNER_CA_BUNDLE" in result.message
