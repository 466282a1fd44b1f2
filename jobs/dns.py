"""DNS jobs: check the zone files (parse, then lint every name), and time lookups through the
system resolver."""

import gzip
import io
import re
import socket
import time
import zlib
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone
import dns.zonefile

ZONES_DIR = "JOBS_ZONES_DIR"
PROBE_NAMES = "JOBS_DNS_PROBE_NAMES"
SAMPLE_ZONES = Path(__file__).parent / "sample" / "zones"
DEFAULT_PROBE_NAMES = "localhost"
ZONE_SUFFIX = ".zone"
GZIP_SUFFIX = ".gz"

PROGRESS_STEP = 0.01  # report progress, and look for cancellation, at each 1% of the work
PARSE_SHARE = 0.94  # parsing's share of the time a zone takes (measured), linting has the rest
MIN_TTL, MAX_TTL = 60, 7 * 24 * 3600  # shorter hardly caches; resolvers cap longer at a week
MAX_EXAMPLES = 5  # warnings logged of each kind per zone; the run keeps only its last lines
MAX_CNAME_CHAIN = 16  # hops followed looking for a loop, so long chains stay cheap

# Record types whose data names another host that should exist when it is inside the zone.
_TARGETS = {
    dns.rdatatype.NS: lambda rdata: rdata.target,
    dns.rdatatype.MX: lambda rdata: rdata.exchange,
    dns.rdatatype.SRV: lambda rdata: rdata.target,
}
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_WHERE = re.compile(r".*:(\d+): (.*)", re.DOTALL)
_HOST_LABEL = re.compile(rb"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


class ZoneError(ValueError):
    """A zone file that cannot be read or parsed; the message names the file."""


class ResolveError(OSError):
    """One or more probed names did not resolve."""


class _Cancelled(Exception):
    """Raised from a progress report to stop a cancelled zone check."""


def register(registry):
    """Add the DNS jobs to ``registry``."""
    registry.add(zone_check, name="dns_zone_check", category="dns", interval="5m", timeout="10m")
    registry.add(
        resolver_probe, name="dns_resolver_probe", category="dns", interval="1m", timeout="2m"
    )


def zone_check(ctx):
    """Parse every zone file, lint each name in it, and log the SOA serials and warnings."""
    folder = Path(ctx.settings.get(ZONES_DIR) or SAMPLE_ZONES)
    paths = zone_files(folder)
    texts = [read_zone_text(path) for path in paths]
    progress = _Progress(ctx, sum(len(text) for text in texts))
    records = warnings = 0
    for done, (path, text) in enumerate(zip(paths, texts, strict=True)):
        try:
            if ctx.cancelled:
                raise _Cancelled
            progress.start(zone_name(path), len(text))
            zone = load_zone(path, text, on_record=progress.parsed)
            findings = lint_zone(zone, on_name=progress.linted)
        except _Cancelled:
            ctx.log.warning("cancelled after %d of %d zone files", done, len(paths))
            return f"cancelled after {done} of {len(paths)} zone files"
        count = sum(len(rdataset) for _, rdataset in zone.iterate_rdatasets())
        records += count
        ctx.log.info(
            "%s: serial %d, %d records", zone.origin.to_text(), zone.get_soa().serial, count
        )
        log_findings(ctx.log, path.name, findings)
        warnings += len(findings)
        progress.finish()
    ctx.progress(1.0, f"checked {len(paths)} zone files")
    return f"{len(paths)} zones checked, {records:,} records, {warnings} warnings"


def resolver_probe(ctx):
    """Time a lookup of each probe name through the system resolver."""
    names = probe_names(ctx.settings)
    failures = []
    for done, name in enumerate(names):
        if ctx.cancelled:
            ctx.log.warning("cancelled after %d of %d names", done, len(names))
            return f"cancelled after {done} of {len(names)} names"
        ctx.progress(done / len(names), f"resolving {name}")
        started = time.perf_counter()
        try:
            addresses = resolve(name)
        except (OSError, UnicodeError) as exc:
            failures.append(f"{name} ({exc})")
            ctx.log.error("%s: failed after %.1f ms: %s", name, _ms_since(started), exc)
            continue
        ctx.log.info("%s: %.1f ms, %s", name, _ms_since(started), ", ".join(addresses))
    ctx.progress(1.0, f"probed {len(names)} names")
    if failures:
        raise ResolveError(f"Could not resolve {', '.join(failures)}.")
    return f"{len(names)} names resolved"


def zone_files(folder):
    """The ``*.zone`` and ``*.zone.gz`` files in ``folder``, sorted by name; raise if none."""
    if not folder.is_dir():
        raise ZoneError(
            f"The zone folder {folder} does not exist; set {ZONES_DIR} to a folder of "
            f"*{ZONE_SUFFIX} files."
        )
    paths = sorted(
        path
        for pattern in (f"*{ZONE_SUFFIX}", f"*{ZONE_SUFFIX}{GZIP_SUFFIX}")
        for path in folder.glob(pattern)
        if path.is_file()
    )
    if not paths:
        raise ZoneError(
            f"No *{ZONE_SUFFIX} or *{ZONE_SUFFIX}{GZIP_SUFFIX} files in {folder}; set "
            f"{ZONES_DIR} to the folder that holds them, named after their zone "
            "(example.test.zone)."
        )
    return paths


def zone_name(path):
    """The zone a file holds, from its name: ``example.test.zone(.gz)`` holds example.test."""
    return path.name.removesuffix(GZIP_SUFFIX).removesuffix(ZONE_SUFFIX)


def read_zone_text(path):
    """The text of the zone file at ``path``, unzipped if its name ends in ``.gz``."""
    try:
        if path.name.endswith(GZIP_SUFFIX):
            with gzip.open(path, "rt", encoding="utf-8") as file:
                return file.read()
        return path.read_text(encoding="utf-8")
    except (OSError, EOFError, zlib.error, UnicodeError) as exc:
        # EOFError: a truncated gzip file; zlib.error: a corrupt one.
        raise ZoneError(f"Zone file {path}: {exc or type(exc).__name__}") from exc


def load_zone(path, text=None, on_record=None):
    """Parse the zone file at ``path`` (or its ``text``, already read), whose origin is its
    name less ``.zone`` or ``.zone.gz``. ``on_record(offset, count)`` is called after each
    record with how many characters and records have been read."""
    if text is None:
        text = read_zone_text(path)
    source = io.StringIO(text)
    last_name, offset, count = dns.name.empty, 0, 0

    def track(txn, name, rdataset):
        nonlocal last_name, offset, count
        last_name, offset, count = name, source.tell(), count + 1
        if on_record is not None:
            on_record(offset, count)

    try:
        return dns.zone.from_file(
            source,
            origin=zone_name(path) + ".",
            relativize=True,
            filename=str(path),
            transaction_setup=lambda txn: txn.check_put_rdataset(track),
        )
    except dns.exception.SyntaxError as exc:
        # dnspython says "<filename>:<line>: <problem>"; keep the line, name the file once.
        match = _WHERE.fullmatch(str(exc))
        where = f", line {match.group(1)}: {match.group(2)}" if match else f": {exc}"
        raise ZoneError(f"Zone file {path}{where}") from exc
    except dns.zonefile.CNAMEAndOtherData as exc:
        # dnspython gives no line for this one. The clashing record is the last one read,
        # and its line ends where the parser stopped reading.
        line = text.count("\n", 0, max(offset - 1, 0)) + 1
        raise ZoneError(
            f"Zone file {path}, line {line}: {last_name} has a CNAME and other records; "
            "a CNAME must be the only record at its name, so remove one or rename it."
        ) from exc
    except dns.exception.DNSException as exc:
        raise ZoneError(f"Zone file {path}: {exc or type(exc).__name__}") from exc


def lint_zone(zone, on_name=None):
    """Lint every name of ``zone``: a list of ``(kind, text)`` warnings. ``on_name(index,
    total)`` is called before each name is checked."""
    findings = []
    addresses = {}  # address -> the first name holding it
    nodes = list(zone.nodes.items())
    for index, (name, node) in enumerate(nodes):
        if on_name is not None:
            on_name(index, len(nodes))
        findings += _lint_name(zone, name, node, addresses)
    return findings


def _lint_name(zone, name, node, addresses):
    """The warnings about one name and its records."""
    found = []
    if not _is_host_name(name) and _has_address(zone, node):
        text = f"{name} has an address but is not a host name; use letters, digits and hyphens"
        found.append(("bad host name", text))
    for rdataset in node:
        rdtype = rdataset.rdtype
        where = f"{name} {dns.rdatatype.to_text(rdtype)}"
        if not MIN_TTL <= rdataset.ttl <= MAX_TTL:
            text = f"{where} has TTL {rdataset.ttl}; use {MIN_TTL} to {MAX_TTL} (a week)"
            found.append(("TTL out of range", text))
        if rdtype in _ADDRESS_TYPES:
            for rdata in rdataset:
                first = addresses.setdefault(rdata.address, name)
                if first != name:
                    text = f"{where} {rdata.address} is also the address of {first}"
                    found.append(("duplicate address", text))
        elif rdtype == dns.rdatatype.CNAME:
            found += _lint_cname(zone, name, rdataset[0].target)
        elif rdtype in _TARGETS:
            found += _lint_targets(zone, where, rdataset)
    return found


def _lint_cname(zone, name, target):
    """A CNAME pointing inside the zone at nothing, or round in a loop."""
    target = _inside(zone, target)
    if target is None:
        return []
    if zone.get_node(target) is None:
        return [("missing target", f"{name} CNAME points to {target}, which does not exist")]
    chain, hop = [name], target
    while hop is not None and len(chain) <= MAX_CNAME_CHAIN:
        if hop in chain:
            # Each name of a loop finds it; the first of them in sort order reports it.
            loop = chain[chain.index(hop) :]
            if hop == name and name == min(loop):
                shown = " -> ".join(str(n) for n in [*loop, name])
                return [("CNAME loop", f"{name} CNAME loops back to itself: {shown}")]
            return []
        chain.append(hop)
        hop = _cname_of(zone, hop)
    return []


def _lint_targets(zone, where, rdataset):
    """NS, MX or SRV records pointing inside the zone at a name without an address."""
    found = []
    for rdata in rdataset:
        target = _inside(zone, _TARGETS[rdataset.rdtype](rdata))
        if target is None:
            continue
        node = zone.get_node(target)
        if node is None:
            found.append(("missing target", f"{where} points to {target}, which does not exist"))
        elif node.get_rdataset(zone.rdclass, dns.rdatatype.CNAME):
            text = (
                f"{where} points to {target}, which is a CNAME; point it at the host's own name "
                "(RFC 2181 10.3)"
            )
            found.append(("alias target", text))
        elif not _has_address(zone, node):
            text = f"{where} points to {target}, which has no A or AAAA record"
            found.append(("target without address", text))
    return found


def _inside(zone, target):
    """``target`` relative to the zone, or None when it is outside (other zones are checked
    on their own)."""
    target = target.derelativize(zone.origin)
    if not target.is_subdomain(zone.origin):
        return None
    return target.relativize(zone.origin)


def _cname_of(zone, name):
    """Where the CNAME at ``name`` points inside the zone, or None."""
    node = zone.get_node(name)
    rdataset = node and node.get_rdataset(zone.rdclass, dns.rdatatype.CNAME)
    return _inside(zone, rdataset[0].target) if rdataset else None


def _has_address(zone, node):
    return any(node.get_rdataset(zone.rdclass, rdtype) for rdtype in _ADDRESS_TYPES)


def _is_host_name(name):
    """Letters, digits and inner hyphens in each label (RFC 1123); a leading ``*`` is a
    wildcard."""
    labels = name.labels[1:] if name.labels[:1] == (b"*",) else name.labels
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def log_findings(log, file_name, findings):
    """Log a count of each kind of warning and the first few of each, so a zone with
    thousands of problems still leaves a readable log."""
    if not findings:
        return
    by_kind = {}
    for kind, text in findings:
        by_kind.setdefault(kind, []).append(text)
    counts = ", ".join(f"{kind}: {len(texts)}" for kind, texts in by_kind.items())
    log.warning("%s: %d warnings (%s)", file_name, len(findings), counts)
    for kind, texts in by_kind.items():
        for text in texts[:MAX_EXAMPLES]:
            log.warning("%s: %s", file_name, text)
        if len(texts) > MAX_EXAMPLES:
            log.warning("%s: %d more %s warnings", file_name, len(texts) - MAX_EXAMPLES, kind)


class _Progress:
    """The zone check's progress over all its files, measured in characters of zone text:
    parsing a zone moves through the first PARSE_SHARE of its characters, linting through
    the rest. Reports at each PROGRESS_STEP, and stops the check there once cancelled."""

    def __init__(self, ctx, total):
        self._ctx = ctx
        self._total = max(total, 1)
        self._base = 0  # characters of the zones already checked
        self._next = 0.0  # the fraction at which to report next
        self._fraction = 0.0
        self._zone = ""
        self._size = 0

    def start(self, zone, size):
        """Begin a zone of ``size`` characters."""
        self._zone, self._size = zone, size

    def parsed(self, offset, records):
        """The parser has read ``offset`` characters, holding ``records`` records."""
        if self._due(offset * PARSE_SHARE):
            self._report(f"{self._zone}: read {records:,} records")

    def linted(self, index, names):
        """Linting is about to check name ``index`` of ``names``."""
        if self._due(self._size * (PARSE_SHARE + (1 - PARSE_SHARE) * index / names)):
            self._report(f"{self._zone}: checked {index:,} of {names:,} names")

    def finish(self):
        """The current zone is done."""
        self._base += self._size

    def _due(self, done_in_zone):
        self._fraction = (self._base + min(done_in_zone, self._size)) / self._total
        return self._fraction >= self._next

    def _report(self, message):
        if self._ctx.cancelled:
            raise _Cancelled
        self._ctx.progress(self._fraction, message)
        self._next = self._fraction + PROGRESS_STEP


def probe_names(settings):
    """The names to probe, from the comma-separated setting."""
    text = settings.get(PROBE_NAMES) or DEFAULT_PROBE_NAMES
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"{PROBE_NAMES} names no host; use e.g. 'localhost,example.test'.")
    return names


def resolve(name):
    """The distinct addresses the system resolver gives for ``name``."""
    infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def _ms_since(started):
    return (time.perf_counter() - started) * 1000
