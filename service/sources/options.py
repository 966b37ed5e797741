"""The ``options`` each source kind accepts, checked when a source is written.

A typo in a selector or an option name would otherwise surface only at the next poll, as a
failing source; checking when the catalogue loads or the API writes the source reports it to the
person who made it, with the option's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from selectolax.lexbor import LexborHTMLParser

__all__ = ["OPTION_MODELS", "check_options"]

_PROBE = LexborHTMLParser("<p></p>")


def _selector(value: str) -> str:
    try:
        _PROBE.css(value)
    except Exception as exc:  # selectolax raises its own bare error class
        raise ValueError(f"invalid CSS selector {value!r}: {exc}") from exc
    return value


def _date_format(value: str) -> str:
    if "%" not in value:
        raise ValueError("a strptime format such as '%d-%m-%Y'")
    return value


Selector = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_selector)]
DottedPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^.\s]+(\.[^.\s]+)*$")]
DateFormat = Annotated[str, Field(max_length=100), AfterValidator(_date_format)]


class _Common(BaseModel):
    # strict: "follow = 'yes'" must be an error, not a truthy string stored as-is.
    model_config = ConfigDict(extra="forbid", strict=True)

    stale_after_hours: Annotated[int | float, Field(gt=0, le=24 * 366)] | None = Field(
        default=None, description="Silent longer than this, the source is marked stale."
    )


class FeedOptions(_Common):
    """RSS, Atom, RDF and JSON Feed need no mapping."""


class HtmlOptions(_Common):
    """CSS selectors that turn a listing page into items."""

    item: Selector = Field(description="One element per item.")
    title: Selector | None = None
    link: Selector | None = None
    date: Selector | None = None
    summary: Selector | None = None
    date_format: DateFormat | None = None
    follow: bool = Field(default=False, description="Fetch each new item's page.")
    content: Selector | None = Field(
        default=None, description="The article text on a followed page (else guessed)."
    )


class JsonOptions(_Common):
    """Dotted paths from the document to its list of records and from a record to its fields."""

    preset: Literal["gdelt"] | None = None
    items: DottedPath | None = None
    title: DottedPath | None = None
    link: DottedPath | None = None
    date: DottedPath | None = None
    date_format: DateFormat | None = None
    guid: DottedPath | None = None
    summary: DottedPath | None = None
    language: DottedPath | None = None


OPTION_MODELS: Mapping[str, type[_Common]] = {
    "feed": FeedOptions,
    "html": HtmlOptions,
    "json": JsonOptions,
}


def check_options(kind: str, options: Mapping[str, Any]) -> None:
    """Check ``options`` against what ``kind`` accepts.

    Raises:
        ValueError: one line per problem, each naming the option.
    """
    model = OPTION_MODELS.get(kind)
    if model is None:
        return
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'options'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise ValueError(f"{kind} options: " + "; ".join(problems)) from None
