from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from service.db.session import dumps_json

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
