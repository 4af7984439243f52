"""Where components listen, read from ``/proc`` (what the kernel says, not what the config says)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse


def _hex_addr(hexaddr: str) -> str:
    ip_hex, port_hex = hexaddr.split(":")
    raw = bytes.fromhex(ip_hex)
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # /proc/net/tcp6: four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    host = str(ip) if ip.version == 4 else f"[{ip}]"
    return f"{host}:{int(port_hex, 16)}"


def listening_sockets(pids: Iterable[int]) -> list[str]:
    """``host:port`` of every TCP socket in LISTEN state owned by ``pids`` (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                found.append(_hex_addr(cols[1]))
    return sorted(set(found))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name, an IPv4/IPv6 address, bracketed or not) stays on this machine."""
    host = host.strip("[]")
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def host_of(addr: str) -> str:
    """The host of a URL or of a ``host:port`` listener address."""
    if "://" in addr:
        return urlparse(addr).hostname or ""
    return addr.rsplit(":", 1)[0].strip("[]")
