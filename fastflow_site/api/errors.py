"""One error body for the whole API: `{"error": code, "detail": text, "fields": {...}}`.

DRF's own exceptions, every service's `ServiceError` (fastflow_site/errors.py: its code, status
and fields) and Django's validation errors are all turned into that shape here, so views never
build error responses by hand. Nothing here knows an app: the errors carry their own status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from fastflow_site.errors import ServiceError

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """Raise from a view for an error the generic classes do not name (e.g. 409, 413)."""

    def __init__(
        self, detail: str, *, code: str, status_code: int, fields: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.error_code = code
        self.fields = fields or {}


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than {limit} bytes",
            code="payload_too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )


def error_body(code: str, detail: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"error": code, "detail": detail, "fields": fields or {}}


def error_json(
    code: str, detail: str, *, status: int, fields: dict[str, str] | None = None
) -> JsonResponse:
    """The same body for plain Django views (webhooks, the API's catch-all 404)."""
    return JsonResponse(error_body(code, detail, fields), status=status)


def service_error_json(exc: ServiceError) -> JsonResponse:
    """A service's refusal as a plain Django response (the webhook view), headers included."""
    response = error_json(exc.code, str(exc), status=exc.http_status, fields=exc.fields)
    for name, value in exc.headers.items():
        response[name] = value
    return response


def json_post_view(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """A plain (non-DRF) POST endpoint such as a webhook: another method gets 405 with `Allow`,
    a service's refusal (`ServiceError`) becomes its error response, and anything unexpected
    the API's JSON 500 — never Django's error page, which (with DEBUG on) shows the request path,
    and a webhook's path holds its key."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if request.method != "POST":
            response = error_json(
                "method_not_allowed", f"method {request.method} not allowed; use POST", status=405
            )
            response["Allow"] = "POST"
            return response
        try:
            return view(request, *args, **kwargs)
        except ServiceError as refusal:
            return service_error_json(refusal)
        except Exception:
            logger.exception("%s.%s failed", view.__module__, view.__name__)
            return error_json("server_error", "internal server error", status=500)

    return wrapper


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, str]:
    """DRF's nested error structure → `{"field.sub": "first message; second"}`."""
    if isinstance(detail, dict):
        flat: dict[str, str] = {}
        for key, value in detail.items():
            flat.update(flatten_errors(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix or "non_field_errors": "; ".join(str(item) for item in detail)}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "non_field_errors": str(detail)}


def _validation_detail(fields: dict[str, str]) -> str:
    general = fields.pop("non_field_errors", None)
    if general and not fields:
        return general
    names = ", ".join(sorted(fields))
    return f"{general}; invalid field(s): {names}" if general else f"invalid field(s): {names}"


def _from_api_exception(exc: exceptions.APIException) -> tuple[str, str, dict[str, str]]:
    if isinstance(exc, ApiError):
        return exc.error_code, str(exc.detail), exc.fields
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten_errors(exc.detail)
        detail = _validation_detail(dict(fields))
        fields.pop("non_field_errors", None)
        return "invalid", detail, fields
    code = exc.get_codes() if not isinstance(exc.detail, (list, dict)) else exc.default_code
    detail = exc.detail if not isinstance(exc.detail, (list, dict)) else exc.default_detail
    return str(code), str(detail), {}


def _as_api_exception(exc: Exception) -> Exception:
    """Django's own request and lookup errors as the DRF exceptions they amount to."""
    if isinstance(exc, (Http404, ObjectDoesNotExist)):
        # ObjectDoesNotExist: a row deleted between the view's lookup and the service's write.
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        # DRF reads JSON bodies through HttpRequest.body, which enforces this Django limit.
        return PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError(str(exc) or "malformed request")
    return exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every failure leaves in the one error shape."""
    exc = _as_api_exception(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code, detail, fields = _from_api_exception(exc)
        status_code = exc.status_code
    elif isinstance(exc, ServiceError):
        code, detail, fields = exc.code, str(exc), dict(exc.fields)
        status_code = exc.http_status
        headers.update(exc.headers)
    elif isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            fields = {k: "; ".join(v) for k, v in exc.message_dict.items()}
        else:
            fields = {}
        detail = "; ".join(exc.messages) if not fields else _validation_detail(dict(fields))
        code, status_code = "invalid", status.HTTP_400_BAD_REQUEST
    else:
        # Unexpected: log it with the traceback, answer in the same shape without internals.
        request = context.get("request")
        logger.exception("unhandled API error on %s", getattr(request, "path", "?"))
        code, detail, fields = "server_error", "internal server error", {}
        status_code = status.HTTP_500_INTERNAL_SERVER_ERROR

    set_rollback()
    return Response(error_body(code, detail, fields), status=status_code, headers=headers)


@csrf_exempt  # it changes nothing; without this a POST to a wrong path gets an HTML 403
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Catch-all for /api/ paths no route matched (Django would answer with an HTML page)."""
    return error_json("not_found", f"no API endpoint at {request.path}", status=404)
