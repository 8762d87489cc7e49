"""Kubernetes names: DNS labels, DNS subdomains, qualified attribute names, quantities."""

from __future__ import annotations

import hashlib
import re

from accelpool.errors import InvalidRequest

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
GIB, MIB = 1 << 30, 1 << 20


def is_dns_label(text: str) -> bool:
    return bool(DNS_LABEL.match(text))


def is_dns_subdomain(text: str) -> bool:
    return len(text) <= 253 and bool(DNS_SUBDOMAIN.match(text))


def dns_label(text: str, limit: int = 63) -> str:
    """``text`` as a DNS label: lower case, dots dropped between digits and letters
    (``1g.5gb`` -> ``1g5gb``), anything else outside ``[a-z0-9-]`` a dash; shortened
    with a hash of the whole when longer than ``limit``."""
    low = text.lower().replace(".", "")
    label = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", low)).strip("-") or "x"
    if len(label) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = label[: limit - 9].rstrip("-") + "-" + digest
    return label


def is_qualified_name(name: str) -> bool:
    """A DRA attribute or capacity name: ``identifier`` or ``domain/identifier``."""
    domain, _, ident = name.rpartition("/")
    if domain and (len(domain) > 63 or not is_dns_subdomain(domain)):
        return False
    return bool(C_IDENTIFIER.match(ident))


def quantity(n: int) -> str:
    """An integer as a Kubernetes quantity, in Gi or Mi when it divides evenly."""
    if n and n % GIB == 0:
        return f"{n // GIB}Gi"
    if n and n % MIB == 0:
        return f"{n // MIB}Mi"
    return str(n)


def parse_quantity(text: str) -> int:
    """The integer value of a quantity written by :func:`quantity`."""
    for suffix, mult in (("Gi", GIB), ("Mi", MIB)):
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * mult
    return int(text)


DEFAULT_DRIVER = "accelpool.dev"
VERSIONS = ("1.34", "1.35")


def check_version(version: str) -> str:
    if version in VERSIONS:
        return version
    m = re.match(r"^1\.(\d+)$", version)
    if m and int(m.group(1)) > 35:
        return "1.35"  # the 1.35 layout holds for later releases
    raise InvalidRequest(
        f"unknown Kubernetes version {version!r}: give 1.34 or 1.35 (1.36+ use the 1.35 layout)"
    )


def check_driver(driver: str) -> str:
    if not is_dns_subdomain(driver) or "." not in driver:
        raise InvalidRequest(
            f"driver name {driver!r} is not a DNS subdomain with a domain you own "
            f"(e.g. {DEFAULT_DRIVER}); use lower-case letters, digits, '-' and '.'"
        )
    return driver


def check_node(node: str) -> str:
    if not is_dns_subdomain(node):
        raise InvalidRequest(
            f"node name {node!r} is not a valid Kubernetes node name (a DNS subdomain); "
            "pass the node's name as 'kubectl get nodes' shows it"
        )
    return node
