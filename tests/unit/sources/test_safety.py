from __future__ import annotations

from collections.abc import Sequence

import pytest

from service.exceptions import UnsafeURLError
from service.safety import check_url


def resolver_to(*addresses: str):
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://198.18.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[2002:7f00:1::]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
async def test_private_literals_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        await check_url(url, allow_loopback=False, resolver=resolver_to("93.184.216.34"))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.org/",
        "gopher://x/",
        "http://user:pw@example.org/",
        "/x",
    ],
)
async def test_schemes_credentials_and_relative_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        await check_url(url, allow_loopback=True, resolver=resolver_to("93.184.216.34"))


async def test_names_are_checked_on_every_resolved_address() -> None:
    with pytest.raises(UnsafeURLError, match="metadata"):
        await check_url(
            "https://feeds.example.org/rss",
            allow_loopback=False,
            resolver=resolver_to("93.184.216.34", "169.254.169.254"),
        )


async def test_public_addresses_pass() -> None:
    await check_url(
        "https://feeds.example.org/rss",
        allow_loopback=False,
        resolver=resolver_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"),
    )


async def test_loopback_only_when_allowed_and_still_no_metadata() -> None:
    await check_url("http://127.0.0.1:8080/feed", allow_loopback=True)
    await check_url("http://[::1]:8080/feed", allow_loopback=True)
    with pytest.raises(UnsafeURLError):
        await check_url("http://127.0.0.1:8080/feed", allow_loopback=False)
    with pytest.raises(UnsafeURLError):
        await check_url("http://169.254.169.254/", allow_loopback=True)
    with pytest.raises(UnsafeURLError):
        await check_url("http://10.1.2.3/", allow_loopback=True)


async def test_unresolvable_host() -> None:
    async def fail(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    with pytest.raises(UnsafeURLError, match="does not resolve"):
        await check_url("https://nowhere.invalid/", allow_loopback=False, resolver=fail)


async def test_localhost_through_the_real_resolver_is_refused() -> None:
    with pytest.raises(UnsafeURLError, match="loopback"):
        await check_url("http://localhost/", allow_loopback=False)
