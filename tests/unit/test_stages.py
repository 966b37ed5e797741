"""Stage accounting: sums per stage when on, records nothing when off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service import stages


@pytest.fixture(autouse=True)
def _off_afterwards() -> Iterator[None]:
    yield
    stages.disable()


def test_off_by_default_and_records_nothing() -> None:
    with stages.stage("parse"):
        pass
    assert stages.totals() == {}


def test_on_sums_each_stage_until_disabled() -> None:
    stages.enable()
    for _ in range(3):
        with stages.stage("parse"):
            pass
    with stages.stage("fetch"):
        pass
    spent = stages.totals()
    assert set(spent) == {"parse", "fetch"}
    assert all(seconds >= 0.0 for seconds in spent.values())
    stages.disable()
    with stages.stage("parse"):
        pass
    assert stages.totals() == {}


def test_a_failing_block_is_still_counted() -> None:
    stages.enable()
    with pytest.raises(ValueError, match="bad document"), stages.stage("parse"):
        raise ValueError("bad document")
    assert set(stages.totals()) == {"parse"}
