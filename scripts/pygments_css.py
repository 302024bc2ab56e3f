"""Writes pipelines_app/static/pipelines_app/pygments.css (the code view's colours for both
themes) from pipelines_app/code_view.py; tests/test_admin_pipeline_page.py checks it is current."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "pipelines_app" / "static" / "pipelines_app" / "pygments.css"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
    import django

    django.setup()
    from pipelines_app.code_view import pygments_css

    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(pygments_css())
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
