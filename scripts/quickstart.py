"""`make run`: prepare the embedded defaults and run the web server and the engine together.

Steps: check FASTFLOW_PORT is free, choose the executor, migrate the database, seed
./pipelines with the examples when it is empty, discover pipelines, make sure an ADMIN exists
and print a one-time login link, then supervise `runserver` and `runscheduler`. Ctrl-C (or
SIGTERM) stops both cleanly; if either dies, the other is stopped too and the exit code says so.

The executor: Docker when the daemon answers. If the runner image is neither present nor
pullable (no registry), scripts/build-runner-image.sh builds a local one and runs use it. When
this host trusts other certificates than the image (a TLS-intercepting proxy), runs get the
host's CA bundle (FASTFLOW_RUNNER_CA_BUNDLE). Only when Docker itself is unusable does the
quick start fall back to the local executor, naming the cause (no socket, permission denied,
daemon down).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGE = [PYTHON, str(ROOT / "manage.py")]
DEFAULT_IMAGE = "ghcr.io/astral-sh/uv:python{python_version}-bookworm-slim"
LOCAL_RUNNER_IMAGE = "fastflow-runner:python{python_version}"  # scripts/build-runner-image.sh
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def say(message: str) -> None:
    print(f"[fastflow] {message}", flush=True)


def manage(*args: str, env: dict[str, str], capture: bool = False) -> str:
    result = subprocess.run(
        [*MANAGE, *args], env=env, cwd=ROOT, check=True, text=True, capture_output=capture
    )
    return result.stdout if capture else ""


def docker_problem(exc: BaseException) -> str:
    """The real cause behind docker-py's "Error while fetching server API version: …"."""
    text = str(exc)
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    where = host.removeprefix("unix://")
    if "FileNotFoundError" in text or "No such file or directory" in text:
        return f"there is no Docker socket at {where} (is Docker installed and running?)"
    if "PermissionError" in text or "Permission denied" in text:
        return (
            f"permission denied on {where} (add your user to the docker group: "
            "sudo usermod -aG docker $USER, then log in again)"
        )
    if "ConnectionRefused" in text or "Connection refused" in text:
        return f"nothing answers at {host} (is the Docker daemon running?)"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return f"the Docker daemon at {host} does not answer (timed out)"
    return f"the Docker daemon at {host} is not usable ({text})"


def image_reference(env: dict[str, str]) -> str:
    template = env.get("FASTFLOW_RUNNER_IMAGE", DEFAULT_IMAGE)
    return template.format(python_version=env.get("FASTFLOW_DEFAULT_PYTHON_VERSION", "3.11"))


def have_image(client: object, name: str) -> bool:
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_local_runner() -> str:
    """Run scripts/build-runner-image.sh with a progress line; "" on success, else why not."""
    script = ROOT / "scripts" / "build-runner-image.sh"
    command = ["bash", str(script)]
    if os.geteuid() != 0 and shutil.which("sudo"):
        # Up to date needs no root; a build (debootstrap) does: sudo only if it asks nothing.
        quiet = subprocess.run(command, capture_output=True, text=True)
        if quiet.returncode == 0:
            return ""
        if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
            return (
                "building it needs root (debootstrap): run `sudo scripts/build-runner-image.sh` "
                "once, then `make run` again"
            )
        command = ["sudo", "-n", *command]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    assert proc.stdout is not None
    ticker = threading.Thread(target=_progress, args=(proc, started), daemon=True)
    ticker.start()
    for line in proc.stdout:
        lines.append(line.rstrip())
        print(f"    {line.rstrip()}", flush=True)
    if proc.wait() != 0:
        return f"scripts/build-runner-image.sh failed: {lines[-1] if lines else 'no output'}"
    say(f"local runner image ready ({time.monotonic() - started:.0f} s)")
    return ""


def _progress(proc: subprocess.Popen, started: float) -> None:
    """A line every 15 s while the build is quiet (debootstrap takes most of a minute)."""
    while proc.poll() is None:
        time.sleep(15)
        if proc.poll() is None:
            say(f"... still building the runner image ({time.monotonic() - started:.0f} s)")


def image_ca_bundle_differs(client: object, image: str, host_bundle: Path) -> bool:
    """Whether the runner image trusts other CAs than this host (a TLS-intercepting proxy's
    CA in the host store, a private index): compared byte for byte, read without running."""
    import docker

    container = client.containers.create(image, command=["true"])
    try:
        stream, _ = container.get_archive(IMAGE_CA_BUNDLE)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            while member is not None and member.issym():  # Debian: a plain file; others link
                member = archive.next()
            inside = archive.extractfile(member).read() if member else b""
    except (docker.errors.NotFound, docker.errors.APIError, tarfile.TarError):
        inside = b""
    finally:
        container.remove(force=True)
    return inside != host_bundle.read_bytes()


def host_ca_bundle(env: dict[str, str]) -> Path | None:
    for candidate in (env.get("SSL_CERT_FILE"), HOST_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def choose_executor(env: dict[str, str]) -> None:
    """Docker when it works (building a local runner image when the configured one cannot be
    pulled), else the local executor, saying exactly why."""
    try:
        import docker

        client = docker.from_env(version="auto", timeout=5)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        use_local(env, docker_problem(exc))
        return
    image = image_reference(env)
    if not have_image(client, image):
        say(f"pulling the runner image {image} ...")
        try:
            client.images.pull(image)
        except Exception as exc:  # noqa: BLE001
            # The daemon's own words ("… no such host"), not docker-py's URL dump.
            cause = (getattr(exc, "explanation", None) or str(exc)).splitlines()[0][:200]
            say(
                f"the runner image {image} cannot be pulled ({cause}); building a local one "
                "with scripts/build-runner-image.sh (about a minute the first time) ..."
            )
            failure = build_local_runner()
            if failure:
                use_local(env, f"Docker works, but no runner image: {failure}")
                return
            env["FASTFLOW_RUNNER_IMAGE"] = LOCAL_RUNNER_IMAGE
            image = image_reference(env)
            if not have_image(client, image):
                use_local(
                    env,
                    f"Docker works, but the local runner is Python 3.11 only and "
                    f"FASTFLOW_DEFAULT_PYTHON_VERSION asks for {image}",
                )
                return
            say(f"runs use the local runner image {image}")
    env["FASTFLOW_EXECUTOR"] = "docker"
    bundle = host_ca_bundle(env)
    if (
        bundle is not None
        and "FASTFLOW_RUNNER_CA_BUNDLE" not in env
        and image_ca_bundle_differs(client, image, bundle)
    ):
        env["FASTFLOW_RUNNER_CA_BUNDLE"] = str(bundle)
        say(
            f"this host trusts other certificates than the runner image (a TLS-intercepting "
            f"proxy?): runs get FASTFLOW_RUNNER_CA_BUNDLE={bundle}"
        )
    say("Docker is ready: runs execute in locked-down containers.")


def use_local(env: dict[str, str], reason: str) -> None:
    env["FASTFLOW_EXECUTOR"] = "local"
    bundle = host_ca_bundle(env)
    if bundle is not None and "FASTFLOW_RUNNER_CA_BUNDLE" not in env:
        env["FASTFLOW_RUNNER_CA_BUNDLE"] = str(bundle)  # uv trusts what this host trusts
    say(
        f"{reason}: using the LOCAL executor (runs are subprocesses on this machine, "
        "not isolated). Fix Docker and run `make run` again for real isolation."
    )


def check_port(raw: str) -> int:
    """FASTFLOW_PORT as a number that is free on 127.0.0.1; exits with a message if not."""
    try:
        port = int(raw)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        say(f"FASTFLOW_PORT must be a port number (1-65535), got {raw!r}")
        sys.exit(2)
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            say(
                f"port {port} is not free ({exc.strerror}): stop what uses it or pick another "
                f"port, e.g. FASTFLOW_PORT={port + 1} make run"
            )
            sys.exit(1)
    return port


def seed_pipelines(env: dict[str, str]) -> None:
    target = Path(env.get("FASTFLOW_PIPELINES_DIR") or ROOT / "pipelines")
    if target.exists() and any(p for p in target.iterdir() if not p.name.startswith(".")):
        return
    if "FASTFLOW_PIPELINES_DIR" in env:
        target.mkdir(parents=True, exist_ok=True)
        say(f"{target} is empty; add pipeline folders there (see examples/pipelines/)")
        return
    shutil.copytree(ROOT / "examples" / "pipelines", target, dirs_exist_ok=True)
    say(f"copied the example pipelines into {target}")


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - our own local server
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main() -> int:
    env = dict(os.environ)
    port = check_port(env.get("FASTFLOW_PORT", "8000"))
    env.setdefault("FASTFLOW_BASE_URL", f"http://localhost:{port}")

    if "FASTFLOW_EXECUTOR" not in env:
        choose_executor(env)

    manage("migrate", "--no-input", "-v", "0", env=env)
    seed_pipelines(env)
    print(manage("syncpipelines", env=env, capture=True), end="", flush=True)

    admin_name = env.get("FASTFLOW_ADMIN_USERNAME", "admin")
    link_output = manage("createadmin", admin_name, env=env, capture=True)

    web = subprocess.Popen(
        [*MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload"], env=env, cwd=ROOT
    )
    engine = subprocess.Popen([*MANAGE, "runscheduler"], env=env, cwd=ROOT)
    children = {"web server": web, "engine": engine}

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    if wait_for_http(f"http://127.0.0.1:{port}/healthz", web):
        print(link_output, end="", flush=True)
        say(f"Fast-Flow is running at http://localhost:{port}/admin/  (Ctrl-C stops it)")

    exit_code = 0
    while not stopping:
        for name, proc in _exited(children):
            say(f"the {name} exited with code {proc.returncode}; stopping")
            exit_code = proc.returncode or 1
            stopping = True
        time.sleep(0.3)

    _stop_all(children.values())
    say("stopped")
    return exit_code


def _exited(children: dict[str, subprocess.Popen]) -> list[tuple[str, subprocess.Popen]]:
    return [(name, proc) for name, proc in children.items() if proc.poll() is not None]


def _stop_all(processes: Iterable[subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait for each (killed after 20 s)."""
    processes = list(processes)
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
