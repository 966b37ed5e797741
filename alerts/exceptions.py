"""Errors raised by the pure core."""

from __future__ import annotations


class AlertsError(Exception):
    """Base class for every error raised by :mod:`alerts`."""


class InvalidRuleError(AlertsError, ValueError):
    """A watch-rule query could not be parsed or validated.

    Attributes:
        query: the text that was refused.
        position: 0-based character offset of the problem in ``query``.
        expected: what the parser expected at ``position`` (human readable).
        rule_id: the rule the query belongs to, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        query: str = "",
        position: int = 0,
        expected: str = "",
        rule_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.query = query
        self.position = position
        self.expected = expected
        self.rule_id = rule_id

    def caret(self) -> str:
        """Return the query with a caret under the error position (for terminals)."""
        return f"{self.query}\n{' ' * self.position}^"
