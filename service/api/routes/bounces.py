"""Bounces and complaints: report them (raw or as relay events) and list what they did."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import ValidationError

from alerts.bounces import parse_bounce
from service.api.deps import Admin, ResourcesDep, SessionDep, role
from service.api.routes.common import (
    CREATE,
    READ,
    Limit,
    Offset,
    audit,
    codes,
    invalid_body,
    page,
)
from service.api.schemas import (
    BounceCreate,
    BounceKindName,
    BounceOutcome,
    BouncePage,
    BouncePublic,
)
from service.storage.bounces import BounceInput, input_from_report, list_bounces, record_bounce

router = APIRouter(tags=["bounces"])

MAX_REPORT_BYTES = 1_000_000

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BounceCreate"}},
            "message/rfc822": {
                "schema": {"type": "string", "format": "binary"},
                "example": "(a delivery status notification or ARF report, as received)",
            },
        },
    }
}


@router.post(
    "/bounces",
    responses={**CREATE, **codes(413, 415)},
    openapi_extra={**_BODY, **role("admin")},
    response_model=BounceOutcome,
)
async def post_bounce(
    request: Request, session: SessionDep, resources: ResourcesDep, principal: Admin
) -> BounceOutcome:
    """Record a bounce or complaint and suppress the address as the policy says.

    Post the report as received (``message/rfc822``: an RFC 3464 delivery status notification
    or an RFC 5965 ARF complaint), or a relay's event as JSON. The VERP token or the quoted
    Message-ID finds the delivery; otherwise the address finds the subscriber. A message that
    is no failure report (an auto-reply, a "delayed" notice) is answered ``recorded: false``.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_REPORT_BYTES:
        raise HTTPException(413, f"a report is at most {MAX_REPORT_BYTES} bytes")
    if content_type == "message/rfc822":
        parsed = input_from_report(parse_bounce(body))
        if isinstance(parsed, str):
            return BounceOutcome(recorded=False, reason=parsed, event=None)
        bounce = parsed
    elif content_type == "application/json":
        try:
            event = BounceCreate.model_validate_json(body)
        except ValidationError as exc:
            raise invalid_body(exc) from exc
        bounce = BounceInput(
            kind=event.kind,
            email=event.email,
            source="api",
            status=event.status,
            detail=event.detail,
            token=event.message_id.strip().strip("<>").split("@", 1)[0],
        )
    else:
        raise HTTPException(415, "send application/json or message/rfc822")
    now = resources.clock()
    recorded = await record_bounce(session, bounce, now=now)
    if recorded.subscriber_id is not None and recorded.action in ("suppressed", "unsubscribed"):
        await audit(
            session,
            principal,
            action=recorded.action,
            entity_type="subscriber",
            entity_id=recorded.subscriber_id,
            before=None,
            after={"status": "suppressed", "bounce_event": recorded.id},
            now=now,
        )
    await session.commit()
    return BounceOutcome(recorded=True, reason="", event=BouncePublic.model_validate(recorded))


@router.get("/bounces", responses=READ, openapi_extra=role("admin"))
async def get_bounces(
    session: SessionDep,
    _: Admin,
    email: Annotated[str | None, Query(max_length=320)] = None,
    kind: BounceKindName | None = None,
    subscriber_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> BouncePage:
    """Bounce and complaint reports, newest first."""
    rows, total = await list_bounces(
        session, email=email, kind=kind, subscriber_id=subscriber_id, limit=limit, offset=offset
    )
    return page(
        BouncePage, BouncePublic.model_validate, rows, total=total, limit=limit, offset=offset
    )
