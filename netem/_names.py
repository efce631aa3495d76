"""Names of everything a network creates; each carries the network's prefix.

A prefix is `ht` and 6 hex digits unless the caller chooses one. Names:

- namespaces: `<prefix>-hub`, `<prefix>-h<N>` (under /run/netns)
- bridge in the hub: `<prefix>-br`
- a host's interface (inside its namespace): `<prefix>-h<N>`
- its peer, a port of the bridge in the hub: `<prefix>-p<N>`

Linux limits interface names to 15 bytes, which bounds prefix length and host numbers.
"""

from __future__ import annotations

import re
import secrets
from ipaddress import IPv4Address

from netem._errors import RequestError

IFNAMSIZ = 15
NETNS_DIR = "/run/netns"
MANIFEST_DIR = "/run/netem"
MAX_HOST_NUMBER = 99_999

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,7}$")
GENERATED_PREFIX_RE = re.compile(r"^ht[0-9a-f]{6}$")
# Every name in /run/netns that a network may have created.
OWNED_NETNS_RE = re.compile(r"^(?P<prefix>[a-z][a-z0-9]{1,7})-(?:hub|h[0-9]+)$")


def new_prefix() -> str:
    """A fresh random prefix such as `ht3fa9c1`."""
    return f"ht{secrets.token_hex(3)}"


def check_prefix(prefix: str) -> str:
    """Return `prefix` if names built from it fit; else raise `RequestError`."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise RequestError(
            f"bad prefix {prefix!r}: 2 to 8 characters, lower-case letters and digits, "
            "starting with a letter"
        )
    return prefix


def hub_netns(prefix: str) -> str:
    return f"{prefix}-hub"


def host_name(number: int) -> str:
    return f"h{number}"


def host_mac(ip: IPv4Address) -> str:
    """A host's MAC address, from its data address: locally administered, unique within
    one network (so hosts can know each other's without ARP)."""
    return "02:00:" + ":".join(f"{b:02x}" for b in ip.packed)


def host_netns(prefix: str, number: int) -> str:
    return f"{prefix}-h{number}"


def host_ifname(prefix: str, number: int) -> str:
    return _ifname(f"{prefix}-h{number}")


def hub_ifname(prefix: str, number: int) -> str:
    return _ifname(f"{prefix}-p{number}")


def bridge_ifname(prefix: str) -> str:
    return _ifname(f"{prefix}-br")


def netns_path(netns: str) -> str:
    return f"{NETNS_DIR}/{netns}"


def manifest_path(prefix: str) -> str:
    return f"{MANIFEST_DIR}/{prefix}.json"


def _ifname(name: str) -> str:
    if len(name.encode()) > IFNAMSIZ:
        raise RequestError(f"interface name {name!r} is longer than {IFNAMSIZ} bytes")
    return name
