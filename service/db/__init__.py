"""Database layer: the declarative base, the typed models and engine/session factories."""
