"""Data access. Functions take the session first and never commit: the caller owns the
transaction (one per request, one per unit of work in jobs)."""
