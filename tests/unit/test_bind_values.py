"""How values are bound: JSON text and bulk-insert times, the same as the default path writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from service.db.base import UTCDateTime
from service.db.session import dumps_json
from service.storage.articles import BulkUTCDateTime

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(st.lists(st.text()))
def test_lists_of_strings_are_stored_as_json_dumps_writes_them(value: list[str]) -> None:
    assert dumps_json(value) == json.dumps(value)


@given(_JSON)
def test_any_json_value_is_stored_as_json_dumps_writes_it(value: Any) -> None:
    assert dumps_json(value) == json.dumps(value)


@given(
    st.datetimes(timezones=st.just(UTC))
    | st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=5)), timezone.min]))
)
def test_bulk_times_are_stored_as_utc_datetime_stores_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    usual = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    bulk = BulkUTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert usual is not None
    assert bulk is not None
    try:
        expected = usual(value)
    except OverflowError:  # out of range once in UTC: refused either way
        with pytest.raises(OverflowError):
            bulk(value)
        return
    assert bulk(value) == expected


def test_bulk_times_refuse_naive_datetimes() -> None:
    dialect = sqlite.dialect()
    bulk = BulkUTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bulk is not None
    with pytest.raises(ValueError, match="naive"):
        bulk(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive value under test
