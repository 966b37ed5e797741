"""Fetching and parsing sources: the I/O half of ingestion."""
