"""The admin API routers, mounted by :func:`service.api.app.create_app`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.routes import admin, bounces, content, recipients, rules, sources
from service.api.routes.common import strict_query

admin_router = APIRouter(dependencies=[Depends(strict_query)])
for _module in (sources, rules, content, recipients, bounces, admin):
    admin_router.include_router(_module.router)

__all__ = ["admin_router"]
