"""Read bounce and complaint reports: RFC 3464 delivery status notifications and RFC 5965 ARF.

A report names the recipient it is about and, when we sent with a VERP envelope sender
(``bounces+<token>@bounce-domain``), the token of the delivery. Both are returned; the shell
decides what to do with them. Reports that are neither (an auto-reply, a "delayed" notice
with no failure) come back with ``kind`` ``None`` so they can be logged and dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses
from typing import Literal

__all__ = ["BounceKind", "BounceReport", "parse_bounce", "verp_token"]

BounceKind = Literal["hard", "soft", "complaint"]

_VERP = re.compile(r"bounces\+([A-Za-z0-9._-]+)@", re.IGNORECASE)
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_ADDRESS_TYPE = re.compile(r"^\s*[A-Za-z0-9-]+\s*;\s*")


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a report says.

    Attributes:
        kind: ``hard`` (5.x.x: the address does not take mail), ``soft`` (4.x.x, or a
            failure without a permanent status), ``complaint`` (marked as spam), or ``None``
            when the message is not a failure report.
        recipient: the address the report is about, lower-cased, or ``""``.
        status: the enhanced status code (``5.1.1``), when given.
        detail: the diagnostic text, shortened.
        token: the VERP token (the left part of our Message-ID), when found.
        message_id: the Message-ID of the message that bounced, when the report quotes it.
    """

    kind: BounceKind | None
    recipient: str
    status: str
    detail: str
    token: str
    message_id: str


def verp_token(address: str) -> str:
    """The token in a ``bounces+<token>@domain`` address, or ``""``."""
    found = _VERP.search(address)
    return found.group(1) if found else ""


def _fields(text: str) -> list[dict[str, str]]:
    """Split a ``message/delivery-status`` or ``message/feedback-report`` body into groups."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                groups.append(current)
                current, last = {}, ""
            continue
        if line[:1] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            current[last] = value.strip()
    if current:
        groups.append(current)
    return groups


def _part_text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        # Some parsers give message/* parts as a list of sub-messages: join their headers.
        return "\n\n".join(
            "\n".join(f"{k}: {v}" for k, v in sub.items())
            for sub in payload
            if isinstance(sub, Message)
        )
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(payload)


def _quoted_headers(part: Message) -> Message | None:
    """The headers of the returned original message (message/rfc822 or text/rfc822-headers)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = _part_text(part)
    return message_from_bytes(text.encode("utf-8", "replace"), policy=policy.default)


def _address(value: str) -> str:
    value = _ADDRESS_TYPE.sub("", value)
    found = getaddresses([value])
    return found[0][1].strip().lower() if found and found[0][1] else value.strip().lower()


def _kind_of(action: str, status: str) -> BounceKind | None:
    action = action.lower()
    if action and action not in {"failed"}:
        # delayed, delivered, relayed, expanded: not a failure.
        return None
    if status.startswith("5"):
        return "hard"
    if status.startswith("4") or action == "failed":
        return "soft"
    return None


def parse_bounce(raw: bytes) -> BounceReport:
    """Read one report as received (the whole message, headers included)."""
    message = message_from_bytes(raw, policy=policy.default)
    token = ""
    for header in ("X-Original-To", "Delivered-To", "To", "Envelope-To"):
        for value in message.get_all(header) or []:
            token = token or verp_token(str(value))
    kind: BounceKind | None = None
    recipient = status = detail = message_id = ""
    quoted: Message | None = None
    content_type = message.get_content_type()
    report_type = str(message.get_param("report-type", "") or "").lower()
    for part in message.walk():
        part_type = part.get_content_type()
        if part_type == "message/delivery-status":
            groups = _fields(_part_text(part))
            for group in groups[1:] or groups:
                found_status = _STATUS.search(group.get("status", ""))
                status = found_status.group(0) if found_status else group.get("status", "")
                kind = _kind_of(group.get("action", ""), status)
                recipient = _address(
                    group.get("original-recipient") or group.get("final-recipient", "")
                )
                detail = group.get("diagnostic-code", "")
                if kind is not None:
                    break
        elif part_type == "message/feedback-report":
            groups = _fields(_part_text(part))
            fields = groups[0] if groups else {}
            kind = "complaint"
            recipient = _address(fields.get("original-rcpt-to", ""))
            detail = fields.get("feedback-type", "abuse")
        elif part_type in ("message/rfc822", "text/rfc822-headers") and quoted is None:
            quoted = _quoted_headers(part)
    if content_type != "multipart/report" or report_type not in (
        "delivery-status",
        "feedback-report",
    ):
        # Out-of-office replies and forwarded reports quote the same parts; only a report
        # as such says something about the address.
        kind = None
    if quoted is not None:
        message_id = str(quoted.get("Message-ID", "") or "").strip()
        if not recipient and kind == "complaint":
            recipient = _address(str(quoted.get("To", "") or ""))
        if not token:
            token = verp_token(str(quoted.get("Return-Path", "") or ""))
    if not token and message_id:
        token = message_id.strip("<>").split("@", 1)[0]
    return BounceReport(
        kind=kind,
        recipient=recipient,
        status=status,
        detail=" ".join(detail.split())[:500],
        token=token,
        message_id=message_id,
    )
