"""Delivery benchmark: dealwatch's e-mail and webhook paths next to raw client loops.

Run ``python -m bench.deliver [--count 10000] [--concurrency 4] [--channel both]`` (or
``--channel email`` / ``webhook`` for one channel only). In one run it sends ``count``
digests to a local SMTP sink three times: two raw aiosmtplib loops (one sending the same
pre-built bytes every time, the transport ceiling; one building a plain ``EmailMessage`` per
digest from pre-rendered text and HTML, what a minimal sender does), then dealwatch
rendering, building and sending each digest through :class:`Mailer`. It sends ``count``
webhooks to a local HTTP sink twice (a raw httpx loop posting a fixed body with real Standard
Webhooks headers, then :class:`WebhookSender` serialising and signing each one). The raw loop
signs each request itself (an HMAC-SHA256 over ``id.timestamp.body`` per message, as any
integrator's sender must, since the id differs per message): comparing against unsigned posts
would measure a sender no receiver could verify. It prints throughput and the ratio
dealwatch / raw for these send steps, and the client's CPU time per message (this process,
all threads; the sinks run in processes of their own), steadier than rates on a busy
machine. Last, the whole delivery job runs against a SQLite (or ``--database-url``
PostgreSQL) outbox of ``count`` due subscriptions per channel (plan, claim, attempt row,
render, sign, send, record), which is what a deployment actually does, and the raw loops run
once more. The issue's target (at least 50%) is the whole job against the raw loop, each job
compared with the mean of its raw loop before and after it.

Both sides use ``--concurrency`` connections side by side (the job's default is four lanes,
``delivery.concurrency``) and reuse them for the whole run: the raw SMTP loops keep one
aiosmtplib connection per worker, the job one SMTP connection per lane; the raw httpx loop keeps
a keep-alive pool of that size, and the job's client (a larger pool) never has more requests
in flight than it has lanes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import aiosmtplib
import httpx

from alerts.digest import Digest
from alerts.render import render_email, webhook_payload
from bench.deliver.outbox import run_outbox
from bench.deliver.sinks import Sink
from service.notify.email import Mailer, SmtpOptions, build_message, flatten, make_message_id
from service.notify.webhook import WebhookSender, encode_payload, generate_secret
from tests.support.database import temporary_database
from tests.support.digests import sample_digest

SENDER = "dealwatch <digest@news.example.org>"
UNSUB = "https://dealwatch.example.org/u/"


def _message(digest: Digest, number: int) -> bytes:
    rendered = render_email(
        digest,
        subject_prefix="[dealwatch]",
        unsubscribe_url=f"{UNSUB}{number}",
        preferences_url=f"https://dealwatch.example.org/p/{number}",
        tz="Asia/Karachi",
    )
    message = build_message(
        rendered,
        sender=SENDER,
        to=f"reader{number}@example.com",
        message_id=make_message_id(f"delivery-{number}", domain="news.example.org"),
        list_id="Daily digest <daily.news.example.org>",
        unsubscribe_url=f"{UNSUB}{number}",
        date=datetime.now(UTC),
    )
    return flatten(message)


async def _timed(label: str, count: int, run: Callable[[], Awaitable[int]]) -> float:
    started, cpu = time.perf_counter(), time.process_time()
    done = await run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if done != count:
        raise RuntimeError(f"{label}: {done} of {count} succeeded")
    rate = count / elapsed
    print(
        f"{label:<34} {count:>6} in {elapsed:7.2f} s  {rate:9.0f}/s"
        f"  cpu {cpu / count * 1000:5.2f} ms each"
    )
    return rate


def _split(count: int, parts: int) -> list[range]:
    step = -(-count // parts)
    return [range(start, min(count, start + step)) for start in range(0, count, step)]


async def bench_smtp(
    port: int, count: int, concurrency: int, *, step: bool = True
) -> tuple[float, float, float]:
    """Return (raw bytes, raw EmailMessage, dealwatch) messages per second.

    ``step=False`` runs only the two raw loops (dealwatch's rate is then 0).
    """
    digest = sample_digest()
    raw_bytes = _message(digest, 0)
    prerendered = render_email(
        digest,
        subject_prefix="[dealwatch]",
        unsubscribe_url=f"{UNSUB}0",
        preferences_url="https://dealwatch.example.org/p/0",
        tz="Asia/Karachi",
    )

    async def raw_worker(numbers: range) -> int:
        sent = 0
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            for number in numbers:
                errors, _ = await smtp.sendmail(
                    "digest@news.example.org", [f"reader{number}@example.com"], raw_bytes
                )
                sent += not errors
        return sent

    mailer = Mailer(SmtpOptions(host="127.0.0.1", port=port, tls="none", timeout=30))

    async def dealwatch_worker(numbers: range) -> int:
        sent = 0
        async with mailer.connection() as conn:
            for number in numbers:
                mine = replace(digest, subscription_id=f"sub-{number}")
                rendered = render_email(
                    mine,
                    subject_prefix="[dealwatch]",
                    unsubscribe_url=f"{UNSUB}{number}",
                    preferences_url=f"https://dealwatch.example.org/p/{number}",
                    tz="Asia/Karachi",
                )
                message = build_message(
                    rendered,
                    sender=SENDER,
                    to=f"reader{number}@example.com",
                    message_id=make_message_id(f"delivery-{number}", domain="news.example.org"),
                    list_id="Daily digest <daily.news.example.org>",
                    unsubscribe_url=f"{UNSUB}{number}",
                    date=datetime.now(UTC),
                )
                outcome = await conn.send(message)
                sent += outcome.status == "sent"
        return sent

    async def run(worker: Callable[[range], Awaitable[int]]) -> int:
        return sum(await asyncio.gather(*(worker(part) for part in _split(count, concurrency))))

    async def raw_built_worker(numbers: range) -> int:
        sent = 0
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as smtp:
            for number in numbers:
                message = EmailMessage()
                message["Subject"] = prerendered.subject
                message["From"] = SENDER
                message["To"] = f"reader{number}@example.com"
                message["Date"] = format_datetime(datetime.now(UTC))
                message["Message-ID"] = f"<delivery-{number}@news.example.org>"
                message.set_content(prerendered.text)
                message.add_alternative(prerendered.html, subtype="html")
                errors, _ = await smtp.send_message(message)
                sent += not errors
        return sent

    raw = await _timed("smtp raw loop, pre-built bytes", count, lambda: run(raw_worker))
    built = await _timed("smtp raw loop, EmailMessage each", count, lambda: run(raw_built_worker))
    if not step:
        return raw, built, 0.0
    ours = await _timed("smtp dealwatch render+Mailer", count, lambda: run(dealwatch_worker))
    return raw, built, ours


async def bench_webhooks(
    port: int, count: int, concurrency: int, *, step: bool = True
) -> tuple[float, float]:
    """Return (raw, dealwatch) webhooks per second; ``step=False`` runs only the raw loop."""
    url = f"http://127.0.0.1:{port}/hooks"
    digest = sample_digest()
    secret = generate_secret()
    fixed = encode_payload(
        webhook_payload(
            "digest.published",
            event_time=datetime.now(UTC),
            sequence=0,
            subscription_id="sub",
            digest=digest,
        )
    )
    key = base64.b64decode(secret.removeprefix("whsec_"))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def allow(url: str) -> None:
        return None

    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:

        async def raw_worker(numbers: range) -> int:
            delivered = 0
            for number in numbers:
                msg_id = f"msg_{number}"
                timestamp = str(int(time.time()))
                signed = f"{msg_id}.{timestamp}.".encode() + fixed
                signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
                headers = {
                    "webhook-id": msg_id,
                    "webhook-timestamp": timestamp,
                    "webhook-signature": "v1," + signature.decode(),
                    "content-type": "application/json",
                }
                response = await client.post(url, content=fixed, headers=headers)
                delivered += response.is_success
            return delivered

        sender = WebhookSender(client, timeout=30, url_guard=allow)

        async def dealwatch_worker(numbers: range) -> int:
            delivered = 0
            for number in numbers:
                payload = webhook_payload(
                    "digest.published",
                    event_time=datetime.now(UTC),
                    sequence=number,
                    subscription_id=f"sub-{number}",
                    digest=digest,
                )
                outcome = await sender.send(
                    url,
                    msg_id=f"msg_{number}",
                    event_type="digest.published",
                    payload=payload,
                    secrets=[secret],
                    timestamp=datetime.now(UTC),
                )
                delivered += outcome.status == "delivered"
            return delivered

        async def run(worker: Callable[[range], Awaitable[int]]) -> int:
            parts = _split(count, concurrency)
            return sum(await asyncio.gather(*(worker(part) for part in parts)))

        raw = await _timed("webhook raw httpx loop", count, lambda: run(raw_worker))
        if not step:
            return raw, 0.0
        ours = await _timed("webhook dealwatch WebhookSender", count, lambda: run(dealwatch_worker))
    return raw, ours


def _outbox(args: argparse.Namespace, channel: str, smtp_port: int, webhook_url: str) -> float:
    with (
        tempfile.TemporaryDirectory() as folder,
        temporary_database(args.database_url, Path(folder)) as url,
    ):
        return asyncio.run(
            run_outbox(
                count=args.count,
                channel=channel,
                smtp_port=smtp_port,
                webhook_url=webhook_url,
                database_url=url,
                folder=Path(folder),
                concurrency=args.concurrency,
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--channel",
        choices=("both", "email", "webhook"),
        default="both",
        help="measure only one channel (quicker iteration); default: both",
    )
    parser.add_argument(
        "--no-outbox", action="store_true", help="skip the database-backed delivery job"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server URL for the outbox job (a temporary database is created); "
        "default: a temporary SQLite file",
    )
    args = parser.parse_args()
    email = args.channel in ("both", "email")
    webhook = args.channel in ("both", "webhook")
    smtp_sink, http_sink = Sink("smtp"), Sink("http")
    webhook_url = f"http://127.0.0.1:{http_sink.port}/hooks"
    smtp = hook = (0.0, 0.0, 0.0)
    try:
        if email:
            smtp = asyncio.run(bench_smtp(smtp_sink.port, args.count, args.concurrency))
        if webhook:
            hook = (*asyncio.run(bench_webhooks(http_sink.port, args.count, args.concurrency)), 0.0)
        if not args.no_outbox:
            smtp_job = _outbox(args, "email", smtp_sink.port, webhook_url) if email else 0.0
            hook_job = _outbox(args, "webhook", smtp_sink.port, webhook_url) if webhook else 0.0
            # The raw loops again, right after the jobs: on a shared machine the load drifts
            # over a run, so each job is compared with the mean of its loop before and after.
            print("again, after the jobs:")
            smtp_2 = hook_2 = (0.0, 0.0, 0.0)
            if email:
                smtp_2 = asyncio.run(
                    bench_smtp(smtp_sink.port, args.count, args.concurrency, step=False)
                )
            if webhook:
                hook_2 = (
                    *asyncio.run(
                        bench_webhooks(http_sink.port, args.count, args.concurrency, step=False)
                    ),
                    0.0,
                )
    finally:
        smtp_sink.stop()
        http_sink.stop()
    (smtp_raw, smtp_built, smtp_ours), (hook_raw, hook_ours, _) = smtp, hook
    if not args.no_outbox:
        built = (smtp_built + smtp_2[1]) / 2
        raw = (smtp_raw + smtp_2[0]) / 2
        hooks = (hook_raw + hook_2[0]) / 2
        if email:
            print(f"email job / raw EmailMessage loop:   {smtp_job / built:6.1%}  (target >= 50%)")
        if webhook:
            print(f"webhook job / raw httpx loop:        {hook_job / hooks:6.1%}  (target >= 50%)")
        if email:
            print(
                f"email job / raw pre-built bytes:     {smtp_job / raw:6.1%}  (transport ceiling)"
            )
    if email:
        print(
            f"send step only, e-mail Mailer / raw EmailMessage loop: {smtp_ours / smtp_built:6.1%}"
        )
        print(f"send step only, e-mail Mailer / raw pre-built bytes:   {smtp_ours / smtp_raw:6.1%}")
    if webhook:
        print(f"send step only, WebhookSender / raw httpx loop:        {hook_ours / hook_raw:6.1%}")


if __name__ == "__main__":
    main()
