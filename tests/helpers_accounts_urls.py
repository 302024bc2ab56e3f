"""URLconf for the accounts API tests: the site's URLs plus the API under /api/.

Mounts `accounts_app.api_urls` and the shared API root explicitly, so the tests do not depend on
whether the root urlconf already includes them (first match wins if it does).
"""

from __future__ import annotations

from django.urls import include, path

from fastflow_site.urls import urlpatterns as site_urlpatterns

urlpatterns = [
    path("api/", include("accounts_app.api_urls")),
    path("api/", include("fastflow_site.api.urls")),
    *site_urlpatterns,
]
