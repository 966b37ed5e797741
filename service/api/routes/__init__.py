"""The admin API routers, mounted by :func:`service.api.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import admin, content, recipients, rules, sources

admin_router = APIRouter()
for _module in (sources, rules, content, recipients, admin):
    admin_router.include_router(_module.router)

__all__ = ["admin_router"]
