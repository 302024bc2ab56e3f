from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastflow_site.settings")
# Django first (it configures the settings the wrapper reads).
_django = get_wsgi_application()

from fastflow_site.request_body import ChunkedBodies  # noqa: E402

application = ChunkedBodies(_django)
