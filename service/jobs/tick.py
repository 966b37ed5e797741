"""One tick of the worker: poll due sources, plan and send due digests, resend confirmations."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from service import metrics
from service.jobs.confirmations import resend_due_confirmations
from service.jobs.digests import DeliveryReport, run_due_deliveries
from service.jobs.poll import Poller, PollResult
from service.runtime import Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TickReport:
    polls: tuple[PollResult, ...]
    deliveries: DeliveryReport


async def tick(resources: Resources, poller: Poller) -> TickReport:
    """Do everything that is due now. ``poller`` lives as long as the process."""
    started = time.perf_counter()
    polls = await poller.poll_due()
    deliveries = await run_due_deliveries(resources)
    await resend_due_confirmations(resources)
    metrics.TICK_SECONDS.observe(time.perf_counter() - started)
    return TickReport(polls=tuple(polls), deliveries=deliveries)
