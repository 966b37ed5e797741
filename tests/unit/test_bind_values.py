"""How values are bound: JSON text and UTC times, the same text SQLAlchemy's own types write."""

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

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(st.lists(st.text()))
def test_lists_of_strings_are_stored_as_json_dumps_writes_them(value: list[str]) -> None:
    assert dumps_json(value) == json.dumps(value)


@given(st.lists(st.text()))
def test_tuples_of_strings_are_stored_as_json_dumps_writes_the_list(value: list[str]) -> None:
    # Articles hand their countries and entities over as the tuples they keep.
    assert dumps_json(tuple(value)) == json.dumps(value)


@given(_JSON)
def test_any_json_value_is_stored_as_json_dumps_writes_it(value: Any) -> None:
    assert dumps_json(value) == json.dumps(value)


@given(
    st.datetimes(timezones=st.just(UTC))
    | st.datetimes(timezones=st.sampled_from([timezone(timedelta(hours=5)), timezone.min]))
)
def test_times_are_stored_as_sqlalchemys_sqlite_datetime_stores_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    usual = sqlite.DATETIME().bind_processor(dialect)
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert usual is not None
    assert ours is not None
    try:
        expected = usual(value.astimezone(UTC).replace(tzinfo=None))
    except OverflowError:  # out of range once in UTC: refused either way
        with pytest.raises(OverflowError):
            ours(value)
        return
    assert ours(value) == expected


def test_times_refuse_naive_datetimes() -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive value under test
