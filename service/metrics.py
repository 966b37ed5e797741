"""Prometheus metrics of this process, served at ``/metrics``.

prometheus-client keeps metrics in a registry object; we use our own registry (not the
library's global default) so tests and several apps in one process stay independent of
whatever else registered metrics.
"""

from __future__ import annotations

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
TICK_SECONDS = Histogram(
    "dealwatch_tick_seconds", "Duration of one worker tick.", registry=REGISTRY
)
POLL_LAG = Gauge(
    "dealwatch_poll_lag_seconds",
    "How late the most overdue claimed source was at the last tick.",
    registry=REGISTRY,
)
