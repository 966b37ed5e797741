"""dealwatch's pure core: the rule language, matching, stories, digests and rendering.

Nothing in this package performs I/O, touches a database, reads the clock or reads settings:
callers pass data (and ``now``) in and get data back. ``service`` is the shell that does the
effects. Keep it that way; ``tests/unit/test_purity.py`` enforces it.
"""

from alerts.exceptions import AlertsError, InvalidRuleError
from alerts.types import Article, Match, RuleSpec

__all__ = ["AlertsError", "Article", "InvalidRuleError", "Match", "RuleSpec"]
