"""Boundary rules of the admin API that need no app: If-Match, input models, problem schema."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from pydantic import ValidationError

from service.api.deps import etag, expect_version
from service.api.errors import Problem, document_problems
from service.api.schemas import (
    PreviewRequest,
    RuleCreate,
    SourceCreate,
    SourceUpdate,
    SubscriptionCreate,
    SubscriptionUpdate,
)
from service.exceptions import PreconditionFailedError


def test_if_match_is_required_compared_strongly_and_may_list_tags() -> None:
    assert etag(3) == '"v3"'
    with pytest.raises(HTTPException) as missing:
        expect_version(None, 3)
    assert missing.value.status_code == 428
    assert expect_version(None, 3, required=False) == 3
    assert expect_version('"v3"', 3) == 3
    assert expect_version('"v1", "v3"', 3) == 3
    assert expect_version("*", 3) == 3
    for stale in ('"v2"', 'W/"v3"', "v3", '"3"'):
        with pytest.raises(PreconditionFailedError):
            expect_version(stale, 3)


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [(tuple(error["loc"]), error["type"]) for error in exc.value.errors()]


def test_queries_are_parsed_with_their_position() -> None:
    with pytest.raises(ValidationError) as exc:
        RuleCreate.model_validate({"id": "r", "name": "R", "query": "oil AND"})
    error = exc.value.errors()[0]
    assert (error["loc"], error["type"]) == (("query",), "invalid_query")
    assert error["ctx"]["position"] == 7
    with pytest.raises(ValidationError):
        PreviewRequest.model_validate({"query": "-cricket"})


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"timezone": "Europe/Atlantis"}, ("timezone",)),
        ({"timezone": "utc"}, ("timezone",)),
        ({"send_time": "7:5"}, ("send_time",)),
        ({"send_time": "12:60"}, ("send_time",)),
        ({"weekday": -1}, ("weekday",)),
        ({"cadence": "weekly"}, ()),
        ({"rule_ids": [], "rule_tags": []}, ()),
        ({"endpoint_id": 2}, ()),
        ({"rule_tags": ["Has Space"]}, ("rule_tags",)),
        ({"heartbeat": "yes"}, ("heartbeat",)),
    ],
)
def test_subscription_schedules_are_checked(change: dict[str, object], loc: tuple[str]) -> None:
    body = {"subscriber_id": 1, "rule_ids": ["lng"], **change}
    with pytest.raises(ValidationError) as exc:
        SubscriptionCreate.model_validate(body)
    assert loc in [error[0] for error in _errors(exc)]


def test_valid_subscription_is_normalised() -> None:
    sub = SubscriptionCreate.model_validate(
        {
            "endpoint_id": 3,
            "rule_ids": ["b", "a", "a"],
            "cadence": "weekly",
            "weekday": 6,
            "timezone": "America/Argentina/Buenos_Aires",
        }
    )
    assert sub.rule_ids == ["a", "b"]


def test_partial_updates_refuse_null_except_where_a_value_may_be_empty() -> None:
    with pytest.raises(ValidationError):
        SourceUpdate.model_validate({"name": None})
    assert SourceUpdate.model_validate({"country": None}).changes() == {"country": None}
    assert SubscriptionUpdate.model_validate({"weekday": None}).changes() == {"weekday": None}
    assert SourceUpdate.model_validate({}).changes() == {}
    schema = SourceUpdate.model_json_schema()["properties"]
    assert "anyOf" not in schema["name"]
    assert {"type": "null"} in schema["country"]["anyOf"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "s", "name": "bad\x00name", "url": "https://example.org/feed"},
        {"id": "s", "name": "S", "url": "https://example.org/feed", "options": {"x": float("nan")}},
        {"id": "s", "name": "S", "url": "https://example.org/feed", "interval_minutes": True},
        {"id": "s", "name": "S", "url": "https://example.org/feed", "extra": 1},
    ],
)
def test_unstorable_or_loosely_typed_input_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SourceCreate.model_validate(body)


def test_error_responses_are_documented_as_problems() -> None:
    schema = document_problems(
        {
            "paths": {
                "/x": {
                    "post": {
                        "requestBody": {},
                        "responses": {
                            "200": {"description": "ok"},
                            "422": {"content": {"application/json": {}}},
                        },
                    }
                }
            },
            "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}}},
        }
    )
    responses = schema["paths"]["/x"]["post"]["responses"]
    assert set(responses) == {"200", "400", "422", "500"}
    for code in ("400", "422", "500"):
        assert list(responses[code]["content"]) == ["application/problem+json"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "Problem" in schema["components"]["schemas"]
    assert Problem(title="Not Found", status=404).type == "about:blank"
