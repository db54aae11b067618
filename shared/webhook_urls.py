"""Which webhook URLs may be called (issue 16, "Safety").

A URL is checked twice: when a subscription is created (a 400 naming the rule), and on
every delivery, where the host is resolved once and the request goes to an address that
passed the check (the caller connects to `Target.addresses[0]`, never resolves again), so
a DNS answer that changes between check and connect (rebinding) cannot reach inside.

Rules, each with its name in the error: `scheme` (https only), `credentials` (no
user:password@), `host` (must resolve), `loopback`, `private` (RFC 1918, unique-local,
carrier-grade NAT), `link-local`, `metadata` (cloud instance metadata), `reserved`
(unspecified, multicast, reserved). `DATAPLANE_WEBHOOK_ALLOW_PRIVATE=true` lifts `scheme`,
`loopback`, `private`, `link-local` and `reserved` (tests, `dataplane dev`); `metadata`
stays refused, since no receiver lives there.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200"))
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UnsafeWebhookUrl(InvalidRequest):
    """The URL breaks one of the rules; `rule` names it."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"webhook url refused ({rule}): {message}", rule=rule)
        self.rule = rule


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (the Host header and TLS server name)
    port: int
    addresses: tuple[str, ...]  # checked addresses, in resolver order


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_rule(address: IPAddress) -> str | None:
    """The rule an address breaks, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return "reserved"
    if address.is_private or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT):
        return "private"
    return None


def check_url(url: str, *, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """The checked target of `url`, or UnsafeWebhookUrl naming the broken rule."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeWebhookUrl("syntax", f"not a valid URL ({error})") from error
    scheme = parts.scheme.lower()
    if scheme != "https" and not (allow_private and scheme == "http"):
        raise UnsafeWebhookUrl("scheme", "only https:// URLs are allowed")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("credentials", "the URL must not contain user:password@")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeWebhookUrl("syntax", "the URL has no host")
    if host in METADATA_HOSTNAMES:
        raise UnsafeWebhookUrl("metadata", f"{host} is a cloud metadata service")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = (resolver or system_resolver)(host, port)
        except OSError as error:
            raise UnsafeWebhookUrl("host", f"{host} does not resolve ({error})") from error
        if not addresses:
            raise UnsafeWebhookUrl("host", f"{host} does not resolve")
    for text in addresses:
        rule = address_rule(ipaddress.ip_address(text.split("%", 1)[0]))
        if rule is None or (allow_private and rule != "metadata"):
            continue
        kind = {"metadata": "a cloud metadata address", "loopback": "a loopback address",
                "link-local": "a link-local address", "private": "a private address",
                "reserved": "a reserved, multicast or unspecified address"}[rule]
        raise UnsafeWebhookUrl(rule, f"{host} resolves to {kind} ({text})")
    return Target(scheme=scheme, host=host, port=port, addresses=tuple(addresses))
