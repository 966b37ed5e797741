"""Request dependencies: the session, the resources, the authenticated key and its role.

Roles are ordered: ``viewer`` < ``editor`` < ``admin``; a route names the least role that may
call it, and the same name is published in the OpenAPI document as ``x-required-role`` (the
permission matrix test reads it from there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from service.exceptions import PreconditionFailedError
from service.runtime import Resources
from service.storage.keys import authenticate

Role = Literal["viewer", "editor", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "editor": 1, "admin": 2}


def get_resources(request: Request) -> Resources:
    resources: Resources = request.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One session per request; write routes commit once, anything else rolls back."""
    async with resources.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `dealwatch keys create` or `POST /keys`.",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The key a request was made with: written into the audit log."""

    key_id: int
    name: str
    role: str


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
    session: SessionDep,
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Authenticate the bearer key and stamp its last use (committed at once)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("an API key is required")
    key = await authenticate(session, credentials.credentials, now=resources.clock())
    if key is None:
        raise _unauthorized("the API key is unknown or revoked")
    principal = Principal(key_id=key.id, name=key.name, role=key.role)
    await session.commit()
    return principal


def require(role: Role) -> Any:
    """Return a dependency that admits keys of ``role`` or a higher one (403 otherwise)."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[role]:
            raise HTTPException(403, f"this needs the {role} role; the key is {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def role(name: Role) -> dict[str, Any]:
    """``openapi_extra`` naming the least role of an operation (kept equal to its dependency)."""
    return {"x-required-role": name}


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="The `ETag` last read; required to change or delete the resource.",
        examples=['"v3"'],
    ),
]


def etag(version: int) -> str:
    return f'"v{version}"'


def expect_version(if_match: str | None, current: int, *, required: bool = True) -> int:
    """Check an ``If-Match`` header against the current version and return that version.

    Raises:
        HTTPException: 428 when the header is missing and ``required``.
        PreconditionFailedError: no listed tag matches the current one.
    """
    if if_match is None or not if_match.strip():
        if required:
            raise HTTPException(428, "send If-Match with the ETag you read")
        return current
    tags = [tag.strip() for tag in if_match.split(",")]
    if "*" in tags or etag(current) in tags:
        return current
    raise PreconditionFailedError(
        f"the resource is at {etag(current)}, not {if_match.strip()}: re-read it and retry"
    )
