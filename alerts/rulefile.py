"""Read and write watch rules in TOML (``config/rules.toml``, ``dealwatch match --rules``).

Format::

    [[rule]]
    id = "pk-ru-energy"          # stable slug: lower-case letters, digits and hyphens
    name = "Pakistan–Russia energy and trade"   # optional, defaults to the id
    description = "…"
    query = '''Pakistan Russia (oil OR LNG)'''
    tags = ["pakistan", "russia"]
    min_score = 0.0              # optional, default 0.0
    enabled = true               # optional, default true
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from alerts.exceptions import InvalidRuleError
from alerts.query import parse_query
from alerts.types import RuleSpec

__all__ = ["RULE_ID", "RuleDefinition", "dump_rules_toml", "parse_rules_toml"]

RULE_ID: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\Z")
_KNOWN_KEYS: Final = frozenset(
    {"id", "name", "description", "query", "tags", "min_score", "enabled"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleDefinition:
    """One rule as written in a rules file. Keyword-only, so field order never matters."""

    id: str
    query: str
    name: str = ""
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    min_score: float = 0.0
    enabled: bool = True

    def spec(self) -> RuleSpec:
        """Return the rule as the matcher needs it."""
        return RuleSpec(
            id=self.id,
            query=self.query,
            name=self.name,
            min_score=self.min_score,
            tags=frozenset(self.tags),
        )


def _fail(message: str, rule_id: str | None = None, query: str = "") -> InvalidRuleError:
    prefix = f"rule {rule_id}: " if rule_id else ""
    return InvalidRuleError(prefix + message, query=query, rule_id=rule_id)


def _text(entry: dict[str, Any], key: str, rule_id: str | None, *, required: bool) -> str:
    value = entry.get(key, None if required else "")
    if not isinstance(value, str):
        wanted = "is required and must be a string" if value is None else "must be a string"
        raise _fail(f"{key} {wanted}", rule_id)
    return value


def _definition(entry: dict[str, Any], number: int) -> RuleDefinition:
    if not isinstance(entry, dict):
        raise _fail(f"rule #{number} must be a table")
    raw_id = entry.get("id")
    if not isinstance(raw_id, str) or not RULE_ID.match(raw_id):
        raise _fail(
            f"rule #{number}: id {raw_id!r} must be a slug of a-z, 0-9 and '-' (at most 100)"
        )
    unknown = sorted(set(entry) - _KNOWN_KEYS)
    if unknown:
        raise _fail("unknown keys: " + ", ".join(unknown), raw_id)
    query = _text(entry, "query", raw_id, required=True)
    try:
        parse_query(query)
    except InvalidRuleError as exc:
        raise InvalidRuleError(
            f"rule {raw_id}: {exc.message}",
            query=exc.query,
            position=exc.position,
            expected=exc.expected,
            rule_id=raw_id,
        ) from exc
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _fail("tags must be a list of strings", raw_id)
    min_score = entry.get("min_score", 0.0)
    if (
        isinstance(min_score, bool)
        or not isinstance(min_score, int | float)
        or not math.isfinite(min_score)
        or min_score < 0
    ):
        raise _fail("min_score must be a number >= 0", raw_id)
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail("enabled must be true or false", raw_id)
    return RuleDefinition(
        id=raw_id,
        query=query,
        name=_text(entry, "name", raw_id, required=False) or raw_id,
        description=_text(entry, "description", raw_id, required=False),
        tags=tuple(tags),
        min_score=float(min_score),
        enabled=enabled,
    )


def parse_rules_toml(text: str) -> list[RuleDefinition]:
    """Parse a rules file.

    Args:
        text: TOML text with a ``[[rule]]`` array of tables.

    Returns:
        The rules in file order (disabled rules included; filter on ``enabled``).

    Raises:
        InvalidRuleError: the TOML is malformed, a field is invalid, an id is repeated or a
            query does not parse; ``rule_id`` names the rule when known.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRuleError(f"rules file is not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"rule"})
    if unknown:
        raise _fail("unknown top-level keys: " + ", ".join(unknown))
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise _fail("'rule' must be an array of tables ([[rule]])")
    rules: list[RuleDefinition] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        rule = _definition(entry, number)
        if rule.id in seen:
            raise _fail("the id is used twice", rule.id)
        seen.add(rule.id)
        rules.append(rule)
    return rules


def _toml_string(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes; DEL is the one control
    # character JSON leaves alone and TOML refuses.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def dump_rules_toml(rules: Iterable[RuleDefinition]) -> str:
    """Return ``rules`` as rules-file TOML that :func:`parse_rules_toml` reads back equal."""
    blocks: list[str] = []
    for rule in rules:
        lines = [
            "[[rule]]",
            f"id = {_toml_string(rule.id)}",
            f"name = {_toml_string(rule.name)}",
            f"description = {_toml_string(rule.description)}",
            f"query = {_toml_string(rule.query)}",
            "tags = [" + ", ".join(_toml_string(tag) for tag in rule.tags) + "]",
            f"min_score = {rule.min_score!r}",
            f"enabled = {'true' if rule.enabled else 'false'}",
        ]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
