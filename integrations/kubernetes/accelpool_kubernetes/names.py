"""Kubernetes names: DNS labels, DNS subdomains, qualified attribute names, quantities."""

from __future__ import annotations

import hashlib
import re

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
