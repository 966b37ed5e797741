"""Send double opt-in confirmation e-mails: at sign-up, and again until a relay takes them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from alerts.render import render_confirmation
from service import metrics
from service.notify.email import Mailer, build_message, make_message_id
from service.runtime import Resources, smtp_options
from service.storage.confirmations import (
    PendingConfirmation,
    claim_due_confirmations,
    load_confirmations,
    record_confirmation,
)

log = logging.getLogger(__name__)

CONFIRM_TTL = timedelta(hours=72)
"""How long a confirmation link works."""

_CLAIM_LEASE = timedelta(minutes=5)


def _message_id(resources: Resources, pending: PendingConfirmation) -> str:
    # From the token's hash: every retry of one token carries the same Message-ID, so a relay
    # or mailbox that got an earlier copy can drop the duplicate.
    return make_message_id(
        f"confirm-{pending.subscriber_id}-{pending.token_hash[:16]}",
        domain=resources.settings.delivery.list_id,
    )


async def send_confirmations(resources: Resources, subscriber_ids: Sequence[int]) -> list[str]:
    """Send the pending confirmation e-mails of ``subscriber_ids`` over one SMTP connection.

    Returns what followed for each e-mail sent (see
    :func:`service.storage.confirmations.record_confirmation`), in subscriber id order.
    """
    settings = resources.settings
    async with resources.sessionmaker() as session:
        pending = await load_confirmations(session, subscriber_ids)
    results: list[str] = []
    if not pending:
        return results
    async with Mailer(smtp_options(settings.smtp)).connection() as connection:
        for item in pending:
            if resources.clock() >= item.sent_at + CONFIRM_TTL:
                # The link in it no longer works: sending it would only confuse.
                results.append(await _record(resources, item, "expired", "the link expired"))
                continue
            token = resources.secret_box.open(item.sealed_token)
            rendered = render_confirmation(
                confirm_url=f"{settings.public_base_url}/confirm/{token}",
                subject_prefix=settings.delivery.subject_prefix,
                expires_hours=int(CONFIRM_TTL.total_seconds() // 3600),
            )
            message = build_message(
                rendered,
                sender=settings.smtp.sender,
                to=item.email,
                message_id=_message_id(resources, item),
                list_id=None,
                unsubscribe_url=None,
                date=resources.clock(),
            )
            outcome = await connection.send(message)
            detail = f"{outcome.code or ''} {outcome.message}".strip()
            results.append(await _record(resources, item, outcome.status, detail))
    return results


async def _record(resources: Resources, item: PendingConfirmation, status: str, detail: str) -> str:
    async with resources.sessionmaker() as session:
        result = await record_confirmation(
            session, item, status=status, detail=detail, ttl=CONFIRM_TTL, now=resources.clock()
        )
        await session.commit()
    metrics.CONFIRMATIONS.labels(result=result).inc()
    log.info(
        "confirmation e-mail subscriber_id=%s status=%s result=%s detail=%s",
        item.subscriber_id,
        status,
        result,
        detail[:200],
    )
    return result


async def resend_due_confirmations(resources: Resources, *, limit: int = 50) -> list[str]:
    """Claim the confirmation e-mails due again and send them; return the results."""
    async with resources.sessionmaker() as session:
        claimed = await claim_due_confirmations(
            session, now=resources.clock(), lease=_CLAIM_LEASE, limit=limit
        )
        await session.commit()
    return await send_confirmations(resources, claimed)
