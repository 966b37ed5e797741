"""Public subscriber pages: sign up, confirm, one-click unsubscribe, preferences.

Plain server-rendered HTML (Jinja2, autoescaped), no account and no cookies: every link
carries its own token. Nothing changes state on GET, because mail scanners and prefetchers
follow links (RFC 8058 rationale, EM-14, EM-31): each GET shows a page whose button POSTs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

import jinja2
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import FormData

from service.db.models import Subscriber, Subscription
from service.jobs.confirmations import CONFIRM_TTL, send_confirmations
from service.notify.tokens import InvalidTokenError, Purpose, subscription_link, verify_token
from service.runtime import Resources
from service.storage.lifecycle import (
    Consent,
    InvalidPreferencesError,
    Preferences,
    confirm_subscription,
    enabled_rules,
    pending_for_token,
    request_subscription,
    unsubscribe,
    update_preferences,
)

log = logging.getLogger(__name__)

CADENCE_LABELS = (
    ("daily", "Daily digest"),
    ("weekly", "Weekly digest"),
    ("hourly", "Hourly digest"),
    ("immediate", "Each match as it happens"),
)
WEEKDAYS = tuple(
    enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"))
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("service", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class RateLimiter:
    """A sliding-window limit per key (client address), kept in this process's memory.

    Each process limits on its own; with N processes an address gets at most N times the
    limit, which still stops a form from being used to mail-bomb (the per-address limit in
    the database is the global one).
    """

    limit: int = 5
    window: timedelta = timedelta(minutes=10)
    _hits: dict[str, deque[datetime]] = field(default_factory=dict)

    def allow(self, key: str, now: datetime) -> bool:
        """Record a hit for ``key`` and say whether it is within the limit."""
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        if len(self._hits) > 10_000:
            # Forget idle keys so the table cannot grow without bound.
            for idle in [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window]:
                del self._hits[idle]
        return True

    def retry_after(self, key: str, now: datetime) -> int:
        """Seconds until ``key`` may try again."""
        hits = self._hits.get(key)
        if not hits:
            return 0
        return max(1, int((hits[0] + self.window - now).total_seconds()) + 1)


def _page(template: str, context: Mapping[str, Any], *, status_code: int = 200) -> HTMLResponse:
    html = _TEMPLATES.get_template(template).render(context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def _message(title: str, message: str, *, status_code: int = 200, **link: str) -> HTMLResponse:
    context = {
        "title": title,
        "message": message,
        "link_url": link.get("url", ""),
        "link_text": link.get("text", ""),
    }
    return _page("message.html", context, status_code=status_code)


def _invalid_link() -> HTMLResponse:
    # One answer for unknown, forged, expired and malformed tokens (EM-13).
    return _message(
        "Link not valid",
        "This link is not valid or has expired. Links in older e-mails keep working only for "
        "their own purpose.",
        status_code=404,
    )


def _prefs_from_form(form: FormData | Mapping[str, Any]) -> Preferences:
    def values(name: str) -> list[str]:
        if isinstance(form, FormData):
            return [str(v) for v in form.getlist(name)]
        raw = form.get(name)
        if raw is None:
            return []
        return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]

    def one(name: str, default: str) -> str:
        found = values(name)
        return found[0].strip() if found and found[0].strip() else default

    weekday_text = one("weekday", "")
    try:
        weekday = int(weekday_text) if weekday_text else None
    except ValueError as exc:
        raise InvalidPreferencesError("weekday", "choose the day of the week") from exc
    heartbeat = one("heartbeat", "").lower() in {"1", "true", "on", "yes"}
    return Preferences(
        rule_ids=tuple(values("rule_ids")),
        rule_tags=tuple(values("rule_tags")),
        cadence=one("cadence", "daily"),
        send_time=one("send_time", "08:00")[:5],
        weekday=weekday,
        timezone=one("timezone", "UTC"),
        heartbeat=heartbeat,
    )


async def _form_context(
    resources: Resources, prefs: Preferences, *, error: str = ""
) -> dict[str, Any]:
    async with resources.sessionmaker() as session:
        rules = [{"id": r.id, "name": r.name} for r in await enabled_rules(session)]
    return {
        "rules": rules,
        "prefs": prefs,
        "cadences": CADENCE_LABELS,
        "weekdays": WEEKDAYS,
        "timezones": sorted(available_timezones()),
        "error": error,
    }


def _subscription_id(resources: Resources, token: str, purpose: Purpose) -> int | None:
    # Links in e-mails sent before a key rotation keep working while the old key is listed.
    for key in (resources.secret_key, *resources.previous_secret_keys):
        try:
            subject = verify_token(key, token, purpose=purpose, now=resources.clock())
            return int(subject)
        except (InvalidTokenError, ValueError):
            continue
    return None


def public_router(limiter: RateLimiter | None = None) -> APIRouter:
    """Build the router of the public pages; ``limiter`` bounds sign-ups per client address."""
    limiter = limiter or RateLimiter()
    router = APIRouter(tags=["public"], include_in_schema=False)

    def res(request: Request) -> Resources:
        resources: Resources = request.state.resources
        return resources

    @router.get("/subscribe", response_class=HTMLResponse)
    async def subscribe_page(request: Request) -> HTMLResponse:
        """The sign-up form."""
        context = await _form_context(res(request), Preferences())
        return _page(
            "subscribe.html",
            {**context, "title": "Subscribe", "action": "/subscribe", "email": ""},
        )

    @router.post("/subscribe")
    async def subscribe(request: Request, background: BackgroundTasks) -> Response:
        """Sign up (form or JSON); the same answer whether or not the address is known."""
        resources = res(request)
        now = resources.clock()
        client = request.client.host if request.client else "unknown"
        wants_json = request.headers.get("content-type", "").startswith("application/json")
        if not limiter.allow(client, now):
            retry = str(limiter.retry_after(client, now))
            if wants_json:
                return JSONResponse(
                    {"detail": "too many sign-ups"}, 429, headers={"Retry-After": retry}
                )
            page = _message("Please wait", "Too many sign-ups from here; try again later.")
            page.status_code = 429
            page.headers["Retry-After"] = retry
            return page
        data: FormData | dict[str, Any]
        if wants_json:
            try:
                data = await request.json()
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                return JSONResponse({"detail": "send a JSON object", "field": ""}, 422)
        else:
            data = await request.form()
        email = str(data.get("email") or "")
        prefs = Preferences()
        try:
            prefs = _prefs_from_form(data)
            async with resources.sessionmaker() as session:
                result = await request_subscription(
                    session,
                    email=email,
                    prefs=prefs,
                    consent=Consent(
                        ip=client,
                        user_agent=request.headers.get("user-agent"),
                        source="api" if wants_json else "form",
                    ),
                    box=resources.secret_box,
                    now=now,
                )
                await session.commit()
        except InvalidPreferencesError as exc:
            if wants_json:
                return JSONResponse({"detail": exc.message, "field": exc.field}, 422)
            # Show the form again as the person filled it in.
            context = await _form_context(resources, prefs, error=exc.message)
            return _page(
                "subscribe.html",
                {**context, "title": "Subscribe", "action": "/subscribe", "email": email},
                status_code=422,
            )
        if result.token is not None:
            background.add_task(send_confirmations, resources, [result.subscriber_id])
        text = (
            "If this address can receive digests, a confirmation e-mail is on its way. "
            "Open the link in it to start your subscription."
        )
        if wants_json:
            return JSONResponse({"status": "accepted", "detail": text}, 202)
        return _message("Check your inbox", text, status_code=202)

    @router.get("/confirm/{token}", response_class=HTMLResponse)
    async def confirm_page(request: Request, token: str) -> HTMLResponse:
        """Show the confirmation button; a GET never confirms."""
        resources = res(request)
        async with resources.sessionmaker() as session:
            subscriber = await pending_for_token(
                session, token, now=resources.clock(), ttl=CONFIRM_TTL
            )
        if subscriber is None:
            return _invalid_link()
        return _page(
            "confirm.html",
            {
                "title": "Confirm your subscription",
                "email": subscriber.email,
                "action": f"/confirm/{token}",
            },
        )

    @router.post("/confirm/{token}", response_class=HTMLResponse)
    async def confirm(request: Request, token: str) -> HTMLResponse:
        """Confirm the subscription; the token is then spent."""
        resources = res(request)
        async with resources.sessionmaker() as session:
            subscriber = await confirm_subscription(
                session, token, now=resources.clock(), ttl=CONFIRM_TTL
            )
            await session.commit()
        if subscriber is None:
            return _invalid_link()
        return _message(
            "Subscription confirmed",
            f"{subscriber.email} will receive digests from now on. Every e-mail has a link to "
            "change your preferences or unsubscribe.",
        )

    @router.get("/u/{token}", response_class=HTMLResponse)
    async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
        """Show the unsubscribe button; a GET never unsubscribes (EM-14)."""
        resources = res(request)
        subscription_id = _subscription_id(resources, token, "unsubscribe")
        email = await _email_of(resources, subscription_id)
        if subscription_id is None or email is None:
            return _invalid_link()
        return _page(
            "unsubscribe.html",
            {"title": "Unsubscribe", "email": email, "action": f"/u/{token}"},
        )

    @router.post("/u/{token}", response_class=HTMLResponse)
    async def unsubscribe_one_click(request: Request, token: str) -> HTMLResponse:
        """RFC 8058 one-click unsubscribe: no cookie, no redirect, idempotent."""
        resources = res(request)
        subscription_id = _subscription_id(resources, token, "unsubscribe")
        if subscription_id is None:
            return _invalid_link()
        form = await request.form()
        if form.get("List-Unsubscribe") != "One-Click":
            return _message(
                "Unsubscribe",
                "The request must carry List-Unsubscribe=One-Click.",
                status_code=400,
            )
        async with resources.sessionmaker() as session:
            found = await unsubscribe(session, subscription_id, now=resources.clock())
            await session.commit()
        if not found:
            return _invalid_link()
        return _message(
            "Unsubscribed",
            "You will receive no more e-mails from this subscription.",
        )

    @router.get("/p/{token}", response_class=HTMLResponse)
    async def preferences_page(request: Request, token: str) -> HTMLResponse:
        """The preferences form of one subscription."""
        resources = res(request)
        loaded = await _subscription_view(resources, token)
        if loaded is None:
            return _invalid_link()
        sub, email = loaded
        context = await _form_context(resources, _prefs_of(sub))
        return _page(
            "preferences.html",
            _prefs_page(
                context, email=email, token=token, resources=resources, subscription_id=sub.id
            ),
        )

    @router.post("/p/{token}", response_class=HTMLResponse)
    async def save_preferences(request: Request, token: str) -> HTMLResponse:
        """Save the preferences; the schedule restarts from now."""
        resources = res(request)
        loaded = await _subscription_view(resources, token)
        if loaded is None:
            return _invalid_link()
        sub, email = loaded
        form = await request.form()
        prefs = _prefs_of(sub)
        try:
            prefs = _prefs_from_form(form)
            async with resources.sessionmaker() as session:
                await update_preferences(session, sub.id, prefs, now=resources.clock())
                await session.commit()
        except InvalidPreferencesError as exc:
            context = await _form_context(resources, prefs, error=exc.message)
            return _page(
                "preferences.html",
                _prefs_page(
                    context, email=email, token=token, resources=resources, subscription_id=sub.id
                ),
                status_code=422,
            )
        return _message(
            "Preferences saved",
            "Your next digest follows the new settings.",
            url=f"/p/{token}",
            text="Back to your preferences",
        )

    async def _subscription_view(
        resources: Resources, token: str
    ) -> tuple[Subscription, str] | None:
        subscription_id = _subscription_id(resources, token, "preferences")
        if subscription_id is None:
            return None
        async with resources.sessionmaker() as session:
            sub = await session.get(Subscription, subscription_id)
            if sub is None or sub.subscriber_id is None:
                return None
            subscriber = await session.get(Subscriber, sub.subscriber_id)
            if subscriber is None:
                return None
            return sub, subscriber.email

    return router


def _prefs_of(sub: Subscription) -> Preferences:
    return Preferences(
        rule_ids=tuple(sub.rule_ids),
        rule_tags=tuple(sub.rule_tags),
        cadence=sub.cadence,
        send_time=sub.send_time,
        weekday=sub.weekday,
        timezone=sub.timezone,
        heartbeat=sub.heartbeat,
    )


def _prefs_page(
    context: dict[str, Any], *, email: str, token: str, resources: Resources, subscription_id: int
) -> dict[str, Any]:
    return {
        **context,
        "title": "Your preferences",
        "email": email,
        "action": f"/p/{token}",
        "unsubscribe_url": subscription_link(resources.secret_key, "unsubscribe", subscription_id),
    }


async def _email_of(resources: Resources, subscription_id: int | None) -> str | None:
    if subscription_id is None:
        return None
    async with resources.sessionmaker() as session:
        sub = await session.get(Subscription, subscription_id)
        if sub is None or sub.subscriber_id is None:
            return None
        subscriber = await session.get(Subscriber, sub.subscriber_id)
        return subscriber.email if subscriber is not None else None
