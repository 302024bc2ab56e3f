"""The image's build context (.dockerignore is an allowlist) holds every first-party app.

The smoke test in CI catches a missing app only after a full image build; this checks the
allowlist itself, so a new app that the patterns miss fails in `make test`."""

import fnmatch
from pathlib import Path

from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent


def _allowed_top_level(name: str) -> bool:
    allowed = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if "/" in pattern or "**" in pattern:
            continue  # nested patterns do not decide a top-level folder
        if fnmatch.fnmatch(name, pattern):
            allowed = negate  # later lines win, as in Docker
    return allowed


def test_every_first_party_app_is_in_the_build_context():
    first_party = sorted(
        {
            Path(config.path).name
            for config in apps.get_app_configs()
            if Path(config.path).parent == ROOT
        }
    )
    assert "runs_app" in first_party
    missing = [name for name in first_party if not _allowed_top_level(name)]
    assert missing == [], f".dockerignore leaves these apps out of the image: {missing}"


def test_an_unlisted_folder_stays_out_of_the_build_context():
    assert not _allowed_top_level("tests")
    assert not _allowed_top_level("data")
    assert _allowed_top_level("notifications_app")
