"""Settings: read once at the process edge (CLI, app factory) and passed down as values.

Precedence, highest first: explicit keyword arguments (tests), ``DEALWATCH_*`` environment
variables (nested with ``__``, e.g. ``DEALWATCH_DATABASE__URL``), a ``.env`` file, then
``config/defaults.toml``. Secrets come only from the environment.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from service.exceptions import SettingsError

_REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


def config_dir() -> Path:
    """Return the folder holding ``defaults.toml``, ``sources.toml`` and ``rules.toml``."""
    return Path(os.environ.get("DEALWATCH_CONFIG_DIR", str(_REPO_CONFIG)))


class DatabaseSettings(BaseModel):
    url: str = "sqlite+aiosqlite:///./var/dealwatch.db"
    pool_size: int = Field(default=5, ge=1)
    echo: bool = False


class HttpSettings(BaseModel):
    timeout_seconds: float = Field(default=20.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    user_agent: str = "dealwatch/0.1 (+https://github.com/dealwatch/dealwatch)"
    allow_loopback: bool = False
    per_host_concurrency: int = Field(default=2, ge=1)
    min_host_interval_seconds: float = Field(default=1.0, ge=0)
    max_connections: int = Field(default=50, ge=1)


class PollSettings(BaseModel):
    tick_seconds: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=50, ge=1)
    concurrency: int = Field(default=8, ge=1)
    lease_seconds: int = Field(default=600, ge=10)
    default_interval_minutes: int = Field(default=30, ge=1)
    min_interval_minutes: int = Field(default=5, ge=1)
    max_interval_minutes: int = Field(default=1440, ge=1)
    failing_after: int = Field(default=5, ge=1)
    stale_after_hours: int = Field(default=168, ge=1)
    story_window_hours: int = Field(default=72, ge=1)
    follow_limit: int = Field(default=20, ge=0)


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "dealwatch <alerts@dealwatch.localhost>"
    timeout_seconds: float = Field(default=60.0, gt=0)
    pace_seconds: float = Field(default=0.0, ge=0)
    # VERP (EM-05): envelope sender bounces+<message id>@bounce_domain, so a bounce names the
    # delivery; the domain's MX must reach `dealwatch bounces ingest` (docs/delivery.md).
    bounce_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    # DKIM signing in the application (EM-16), for relays that do not sign with your domain.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key: SecretStr | None = None

    @model_validator(mode="after")
    def _dkim_complete(self) -> SmtpSettings:
        given = [self.dkim_domain, self.dkim_selector, self.dkim_private_key]
        if any(value is not None for value in given) and not all(
            value is not None for value in given
        ):
            raise ValueError("DKIM needs dkim_domain, dkim_selector and dkim_private_key together")
        if self.dkim_private_key is not None:
            try:
                load_pem_private_key(self.dkim_private_key.get_secret_value().encode(), None)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"dkim_private_key is not an unencrypted PEM key: {exc}") from exc
        return self


# Svix's schedule (delivery-standards WH-11): the waits after the 1st, 2nd... failed attempt,
# 27.6 hours in all, so 8 attempts span more than a day.
_SVIX_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
_RetryWait = Annotated[int, Field(ge=1, le=7 * 86400)]


class DeliverySettings(BaseModel):
    batch_size: int = Field(default=50, ge=1)
    concurrency: int = Field(default=4, ge=1)
    lease_seconds: int = Field(default=600, ge=10)
    max_attempts: int = Field(default=12, ge=1)
    retry_schedule_seconds: list[_RetryWait] = Field(
        default_factory=lambda: list(_SVIX_RETRY_SCHEDULE), min_length=1, max_length=50
    )
    retry_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    digest_item_limit: int = Field(default=100, ge=1)
    list_id: str = "dealwatch.localhost"
    subject_prefix: str = "[dealwatch]"

    @property
    def retry_schedule(self) -> tuple[timedelta, ...]:
        """The waits after each failed attempt, as :func:`service.notify.webhook.retry_delay`
        takes them."""
        return tuple(timedelta(seconds=seconds) for seconds in self.retry_schedule_seconds)


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Addresses of reverse proxies whose X-Forwarded-For / -Proto are believed (uvicorn's
    # forwarded_allow_ips); behind a proxy on another host the sign-up limit would otherwise
    # count every visitor as the proxy.
    forwarded_allow_ips: str = "127.0.0.1"
    signup_limit: int = Field(default=5, ge=1)
    signup_window_minutes: int = Field(default=10, ge=1)


Role = Literal["api", "worker", "all"]


class Settings(BaseSettings):
    """Every setting of a dealwatch process. See ``config/defaults.toml`` for each field."""

    model_config = SettingsConfigDict(
        env_prefix="DEALWATCH_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    database: DatabaseSettings = DatabaseSettings()
    http: HttpSettings = HttpSettings()
    poll: PollSettings = PollSettings()
    smtp: SmtpSettings = SmtpSettings()
    delivery: DeliverySettings = DeliverySettings()
    api: ApiSettings = ApiSettings()
    public_base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path("var")
    secret_key: SecretStr | None = None
    # Former secret keys, accepted for link tokens and stored webhook secrets while a key
    # rotation completes (`dealwatch init` re-encrypts every secret under the current key).
    previous_secret_keys: list[SecretStr] = []
    log_level: str = "INFO"

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_dir() / "defaults.toml")
        return (init_settings, env_settings, dotenv_settings, toml)


def load_settings() -> Settings:
    """Read the settings once, at the process edge.

    Raises:
        SettingsError: a value is invalid; the message names each offending setting (as a
            dotted path, e.g. ``delivery.retry_schedule_seconds.1``) and what is wrong.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(settings)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
