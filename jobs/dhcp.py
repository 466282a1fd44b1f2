"""DHCP jobs: prune expired leases from an ISC dhcpd leases file, and count the active ones.

Only IPv4 ``lease ADDRESS { ... }`` blocks are read; every other statement (comments,
``authoring-byte-order``, ``server-duid``, IPv6 ``ia-na`` blocks, ...) is kept as it is.
When an address has several entries the last one is the lease, as dhcpd reads the file.
"""

import ipaddress
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LEASES_FILE = "JOBS_LEASES_FILE"
INSTANCE_PATH = "JOBS_INSTANCE_PATH"
DEFAULT_INSTANCE_PATH = "instance"
SAMPLE_LEASES = Path(__file__).parent / "sample" / "dhcpd.leases"
SUBNET_PREFIX = 24
# Lease files are mostly ASCII; these settings round-trip any other bytes unchanged.
_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}

_LEASE_HEAD = re.compile(r"lease\s+([0-9.]+)\s*\{")
_ENDS_DATE = re.compile(r"\d\s+(\d{4}/\d{1,2}/\d{1,2}\s+\d{1,2}:\d{2}:\d{2})")
_ENDS_EPOCH = re.compile(r"epoch\s+(\d+)")


def register(registry):
    """Add the DHCP jobs to ``registry``."""
    registry.add(
        lease_prune, name="dhcp_lease_prune", category="dhcp", interval="10m", timeout="5m"
    )
    registry.add(
        active_leases, name="dhcp_active_leases", category="dhcp", interval="5m", timeout="5m"
    )


@dataclass(frozen=True)
class Lease:
    """One ``lease`` entry: its address, when it ends (None for never) and where it is."""

    address: str
    ends: float | None
    index: int  # position among the file's top-level statements


def lease_prune(ctx):
    """Remove expired leases from the DHCP leases file."""
    path = leases_path(ctx.settings)
    before = path.stat()
    new_text, kept, pruned = prune_expired(_read(path), time.time())
    if pruned:
        _replace(path, new_text, before)
    ctx.log.info("%s: kept %d leases, pruned %d", path, kept, pruned)
    return f"kept {kept} leases, pruned {pruned}"


def active_leases(ctx):
    """Count the active leases in each /24 subnet of the DHCP leases file."""
    path = leases_path(ctx.settings)
    counts = active_by_subnet(_read(path), time.time())
    for subnet, count in counts.items():
        ctx.log.info("%s: %d active leases", subnet, count)
    total = sum(counts.values())
    return f"{total} active leases in {len(counts)} subnets"


def leases_path(settings):
    """The leases file the jobs work on; the default is a copy of the sample in the instance
    folder, because jobs must never change the files shipped with the app."""
    configured = settings.get(LEASES_FILE)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(
                f"The leases file {path} does not exist; set {LEASES_FILE} to the path of an "
                "ISC dhcpd leases file."
            )
        return path
    path = Path(settings.get(INSTANCE_PATH) or DEFAULT_INSTANCE_PATH) / "dhcpd.leases"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE_LEASES, path)
    return path


def prune_expired(text, now):
    """Return ``(new_text, kept, pruned)``: ``text`` without leases that ended at or before
    ``now`` (epoch seconds) and without entries superseded by a later one for the same address."""
    statements = split_statements(text)
    entries = {i for i, (_, body) in enumerate(statements) if _LEASE_HEAD.match(body)}
    keep = {
        lease.index for lease in _current_leases(statements).values() if not _expired(lease, now)
    }
    drop = entries - keep
    parts = []
    for i, (prefix, body) in enumerate(statements):
        if i in drop:
            parts.append(_comments_only(prefix))
        else:
            parts.append(prefix + body)
    return "".join(parts), len(keep), len(drop)


def active_by_subnet(text, now):
    """Return ``{"192.0.2.0/24": count, ...}`` of the leases active at ``now``, sorted by subnet."""
    counts = {}
    for lease in _current_leases(split_statements(text)).values():
        if not _expired(lease, now):
            subnet = ipaddress.ip_network(f"{lease.address}/{SUBNET_PREFIX}", strict=False)
            counts[subnet] = counts.get(subnet, 0) + 1
    return {str(subnet): counts[subnet] for subnet in sorted(counts)}


def split_statements(text):
    """Split ISC config text into top-level ``(prefix, body)`` pairs, where ``prefix`` is the
    whitespace and comments before a statement; joined back together they give ``text``."""
    statements, start, depth, i, n = [], 0, 0, 0, len(text)
    body_start = None
    while i < n:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = n if end == -1 else end
            continue
        if body_start is None and not char.isspace():
            body_start = i
        if char == '"':
            i = _string_end(text, i)
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"Line {_line(text, i)}: '}}' without a matching '{{'.")
        if (char == ";" and depth == 0) or (char == "}" and depth == 0):
            statements.append((text[start:body_start], text[body_start : i + 1]))
            start, body_start = i + 1, None
        i += 1
    if body_start is not None:
        raise ValueError(f"Line {_line(text, body_start)}: statement has no closing ';' or '}}'.")
    if start < n:
        statements.append((text[start:], ""))
    return statements


def _current_leases(statements):
    """The last entry of each address, by address, in file order."""
    current = {}
    for i, (_, body) in enumerate(statements):
        match = _LEASE_HEAD.match(body)
        if match:
            address = match.group(1)
            current.pop(address, None)
            current[address] = Lease(address, _ends(address, body[match.end() : -1]), i)
    return current


def _ends(address, inner):
    """When the lease ends, from the ``ends`` statement of its block; None for never."""
    for _, statement in split_statements(inner):
        words = statement.rstrip(";").split(None, 1)
        if words and words[0] == "ends":
            value = words[1].strip() if len(words) > 1 else ""
            if value == "never":
                return None
            if match := _ENDS_DATE.fullmatch(value):
                moment = datetime.strptime(" ".join(match.group(1).split()), "%Y/%m/%d %H:%M:%S")
                return moment.replace(tzinfo=UTC).timestamp()
            if match := _ENDS_EPOCH.fullmatch(value):
                return float(match.group(1))
            raise ValueError(
                f"Lease {address}: cannot read 'ends {value}'; expected "
                "'ends W YYYY/MM/DD HH:MM:SS', 'ends epoch N' or 'ends never'."
            )
    return None  # dhcpd treats a lease without an end as never ending


def _expired(lease, now):
    return lease.ends is not None and lease.ends <= now


def _comments_only(prefix):
    """What stays of a removed statement's prefix: the comment lines above it, if any."""
    last = prefix.rfind("#")
    if last == -1:
        return ""
    end = prefix.find("\n", last)
    return prefix if end == -1 else prefix[:end]


def _string_end(text, i):
    """Index of the quote that closes the string opened at ``i``."""
    j = i + 1
    while j < len(text) and text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    if j >= len(text):
        raise ValueError(f"Line {_line(text, i)}: string has no closing quote.")
    return j


def _line(text, i):
    return text.count("\n", 0, i) + 1


def _read(path):
    with open(path, **_ENCODING) as file:
        return file.read()


def _replace(path, text, before):
    """Write ``text`` to ``path`` atomically, unless the file changed since ``before``
    (dhcpd appends to it; replacing it then would lose the new entries)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", **_ENCODING) as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        shutil.copymode(path, tmp)
        now = path.stat()
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise RuntimeError(
                f"{path} changed while it was being pruned; it was left as it is and the next "
                "run will try again."
            )
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
