"""Prometheus metrics of this process, served at ``/metrics``.

prometheus-client keeps metrics in a registry object; we use our own registry (not the
library's global default) so tests and several apps in one process stay independent of
whatever else registered metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

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
