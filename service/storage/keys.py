"""Admin API keys: random, prefixed, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.models import ApiKey

KeyRole = Literal["admin", "editor", "viewer"]
KEY_ROLES: tuple[str, ...] = get_args(KeyRole)
KEY_PREFIX = "dwk_"


def hash_key(plain: str) -> str:
    # The key carries 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(plain.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    session: AsyncSession, *, name: str, role: str, now: datetime
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its plain text, which is not kept anywhere."""
    if role not in KEY_ROLES:
        raise ValueError(f"role must be one of {', '.join(KEY_ROLES)}")
    plain = generate_key()
    key = ApiKey(name=name, role=role, prefix=plain[:12], key_hash=hash_key(plain), created_at=now)
    session.add(key)
    await session.flush()
    return key, plain


async def authenticate(session: AsyncSession, plain: str, *, now: datetime) -> ApiKey | None:
    """Return the live key matching ``plain`` (and stamp its last use), else None."""
    if not plain.startswith(KEY_PREFIX):
        return None
    digest = hash_key(plain)
    key = (
        await session.execute(select(ApiKey).where(ApiKey.key_hash == digest))
    ).scalar_one_or_none()
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, digest):
        return None
    key.last_used_at = now
    return key


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.execute(select(ApiKey).order_by(ApiKey.id))).scalars())
