"""The one place where failures become HTTP responses: RFC 9457 problem details.

Every 4xx and 5xx the API sends is ``application/problem+json`` with ``type``, ``title``,
``status`` and ``detail``; invalid input adds ``errors`` (one entry per field, with its
path), an invalid query adds ``position`` and ``expected``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts.exceptions import InvalidRuleError
from service.exceptions import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ServiceError,
    UnsafeURLError,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One invalid input value."""

    loc: list[str | int] = Field(description="Where the value is: body, query, path or header.")
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class Problem(BaseModel):
    """An RFC 9457 problem details document."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Precondition Failed",
                    "status": 412,
                    "detail": "the resource changed since it was read",
                    "instance": "/rules/pk-ru-energy",
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    position: int | None = Field(default=None, description="Query error offset (0-based).")
    expected: str | None = Field(default=None, description="What the query parser expected.")


def problem_response(
    request: Request,
    status: int,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build a problem+json response for ``status``."""
    body = Problem(
        # RFC 9457 §4.2.1: "about:blank" says the HTTP status is the whole story; the details
        # are in ``detail``, ``errors`` (per field, with a machine-readable ``type``) and
        # ``position``/``expected``.
        type="about:blank",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path,
        **extra,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return str(value)


def field_errors(raw: Any) -> list[FieldError]:
    """Turn pydantic/FastAPI error dicts into ``FieldError``s; input values are not echoed."""
    errors = []
    for error in raw:
        ctx = error.get("ctx")
        errors.append(
            FieldError(
                loc=[part if isinstance(part, int) else str(part) for part in error["loc"]],
                msg=str(error.get("msg", "invalid value")),
                type=str(error.get("type", "value_error")),
                ctx={key: _plain(value) for key, value in ctx.items()} if ctx else None,
            )
        )
    return errors


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers: each exception type maps to exactly one status here."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            request, exc.status_code, str(exc.detail), headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(exc.errors())
        return problem_response(
            request,
            422,
            "the request is invalid: see errors",
            errors=[error.model_dump(exclude_none=True) for error in errors],
        )

    @app.exception_handler(InvalidRuleError)
    async def invalid_rule(request: Request, exc: InvalidRuleError) -> JSONResponse:
        return problem_response(
            request, 422, exc.message, position=exc.position, expected=exc.expected
        )

    @app.exception_handler(UnsafeURLError)
    async def unsafe_url(request: Request, exc: UnsafeURLError) -> JSONResponse:
        return problem_response(request, 422, exc.message)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return problem_response(request, 404, exc.message)

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return problem_response(request, 409, exc.message)

    @app.exception_handler(PreconditionFailedError)
    async def precondition_failed(request: Request, exc: PreconditionFailedError) -> JSONResponse:
        return problem_response(request, 412, exc.message)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return problem_response(request, 400, exc.message)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error method=%s path=%s",
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return problem_response(request, 500, "internal server error")


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read, or the request cannot be carried out.",
    401: "No valid API key (send `Authorization: Bearer <key>`).",
    403: "The key's role may not do this.",
    404: "No such resource.",
    405: "Method not allowed.",
    409: "Conflicts with the stored state.",
    412: "`If-Match` does not match the current `ETag`: re-read and retry.",
    413: "The request body is larger than this endpoint accepts.",
    415: "Unsupported media type.",
    422: "Invalid input; `errors` lists each field with its path.",
    428: "`If-Match` is required: send the `ETag` you read.",
    500: "Unexpected server error (logged).",
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make every error response of ``schema`` a problem+json one, with the Problem schema.

    FastAPI documents error models as ``application/json`` and adds its own
    ``HTTPValidationError`` for 422; both are replaced so the document says what is sent.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = components["Problem"].pop("$defs", {})
    components.update(nested)
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for code, response in operation["responses"].items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = _problem_content()
                    response.setdefault("description", ERROR_DESCRIPTIONS.get(int(code), "Error"))
            extra = [500] + ([400] if "requestBody" in operation else [])
            for code in extra:
                operation["responses"].setdefault(
                    str(code),
                    {"description": ERROR_DESCRIPTIONS[code], "content": _problem_content()},
                )
    return schema
