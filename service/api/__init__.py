"""The HTTP API (FastAPI): health, metrics, the admin API and the public subscriber pages."""
