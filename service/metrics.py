"""Prometheus metrics of this process, served at ``/metrics``.

prometheus-client keeps metrics in a registry object; we use our own registry (not the
library's global default) so tests and several apps in one process stay independent of
whatever else registered metrics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

POLLS = Counter(
    "dealwatch_polls_total",
    "Source polls by outcome (ok, not_modified, error).",
    ["outcome"],
    registry=REGISTRY,
)
ARTICLES = Counter(
    "dealwatch_articles_total",
    "Articles stored, by kind (new, updated).",
    ["kind"],
    registry=REGISTRY,
)
MATCHES = Counter("dealwatch_matches_total", "Rule matches stored.", registry=REGISTRY)
PARSER_FALLBACKS = Counter(
    "dealwatch_parser_fallbacks_total",
    "Feeds the fast parser rejected and the fallback parser read.",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "dealwatch_deliveries_total",
    "Delivery attempts by channel and outcome.",
    ["channel", "outcome"],
    registry=REGISTRY,
)
CONFIRMATIONS = Counter(
    "dealwatch_confirmations_total",
    "Confirmation e-mails sent, by what followed (done, retrying, given_up, bounced, stale).",
    ["result"],
    registry=REGISTRY,
)
TICK_SECONDS = Histogram(
    "dealwatch_tick_seconds", "Duration of one worker tick.", registry=REGISTRY
)

SOURCES = Gauge(
    "dealwatch_sources",
    "Enabled sources by health (from the database, the same in every process).",
    ["health"],
    registry=REGISTRY,
)
SUBSCRIBERS = Gauge(
    "dealwatch_subscribers", "Subscribers by status.", ["status"], registry=REGISTRY
)
DELIVERIES_QUEUED = Gauge(
    "dealwatch_deliveries_queued",
    "Deliveries waiting to be sent or retried, by channel.",
    ["channel"],
    registry=REGISTRY,
)
DELIVERY_OVERDUE = Gauge(
    "dealwatch_delivery_overdue_seconds",
    "How long the most overdue queued delivery has been due (0 when none is): digest lag.",
    registry=REGISTRY,
)

_KNOWN = {
    "health": ("new", "ok", "degraded", "failing", "stale"),
    "status": ("pending", "active", "unsubscribed", "bounced", "suppressed"),
    "channel": ("email", "webhook"),
}


def _publish(gauge: Gauge, known: Iterable[str], values: Mapping[str, int]) -> None:
    # Zero the known labels first: a state that emptied must read 0, not its last count.
    for label in known:
        gauge.labels(label).set(0)
    for label, value in values.items():
        gauge.labels(label).set(value)


def publish_state(
    *,
    sources: Mapping[str, int],
    subscribers: Mapping[str, int],
    queued: Mapping[str, int],
    overdue_seconds: float,
) -> None:
    """Set the state gauges from counts read from the database."""
    _publish(SOURCES, _KNOWN["health"], sources)
    _publish(SUBSCRIBERS, _KNOWN["status"], subscribers)
    _publish(DELIVERIES_QUEUED, _KNOWN["channel"], queued)
    DELIVERY_OVERDUE.set(overdue_seconds)
