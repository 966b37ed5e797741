"""The rules TOML format (``config/rules.toml``, ``dealwatch match --rules FILE``)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from alerts.exceptions import InvalidRuleError
from alerts.query import parse_query
from alerts.types import RuleSpec

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


@dataclass(frozen=True, slots=True)
class RuleDefinition:
    """One ``[[rule]]`` entry: a watch rule as written by a person."""

    id: str
    name: str
    description: str
    query: str
    tags: tuple[str, ...] = field(default=())
    min_score: float = 0.0
    enabled: bool = True

    def spec(self) -> RuleSpec:
        return RuleSpec(
            id=self.id,
            query=self.query,
            name=self.name,
            min_score=self.min_score,
            tags=frozenset(self.tags),
        )


def _field(entry: dict[str, Any], name: str, kind: type, rule_id: str, default: Any) -> Any:
    value = entry.get(name, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRuleError(f"rule {rule_id}: {name} must be a {kind.__name__}", rule_id=rule_id)
    return value


def parse_rules_toml(text: str) -> list[RuleDefinition]:
    """Parse and validate a rules file; every query is parsed.

    Raises:
        InvalidRuleError: malformed TOML, a missing or malformed field, a duplicate id, or a
            query that does not parse (``rule_id``, ``position`` and ``expected`` are set).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRuleError(f"rules file: {exc}") from exc
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise InvalidRuleError("rules file: use [[rule]] tables")
    rules: list[RuleDefinition] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        rule_id = entry.get("id")
        if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
            raise InvalidRuleError(
                f"rule #{index}: id must be a slug of lowercase letters, digits and '-'"
            )
        if rule_id in seen:
            raise InvalidRuleError(f"duplicate rule id {rule_id!r}", rule_id=rule_id)
        seen.add(rule_id)
        unknown = set(entry) - {
            "id",
            "name",
            "description",
            "query",
            "tags",
            "min_score",
            "enabled",
        }
        if unknown:
            raise InvalidRuleError(
                f"rule {rule_id}: unknown field(s) {', '.join(sorted(unknown))}", rule_id=rule_id
            )
        query = _field(entry, "query", str, rule_id, None)
        tags = _field(entry, "tags", list, rule_id, [])
        if not all(isinstance(tag, str) for tag in tags):
            raise InvalidRuleError(f"rule {rule_id}: tags must be strings", rule_id=rule_id)
        try:
            parse_query(query)
        except InvalidRuleError as exc:
            raise InvalidRuleError(
                f"rule {rule_id}: {exc.message}",
                query=exc.query,
                position=exc.position,
                expected=exc.expected,
                rule_id=rule_id,
            ) from exc
        rules.append(
            RuleDefinition(
                id=rule_id,
                name=_field(entry, "name", str, rule_id, rule_id),
                description=_field(entry, "description", str, rule_id, ""),
                query=query,
                tags=tuple(tags),
                min_score=_field(entry, "min_score", float, rule_id, 0.0),
                enabled=_field(entry, "enabled", bool, rule_id, True),
            )
        )
    return rules
