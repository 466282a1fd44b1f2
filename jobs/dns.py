"""DNS jobs: check that the zone files parse, and time lookups through the system resolver."""

import re
import socket
import time
from pathlib import Path

import dns.exception
import dns.rdatatype
import dns.zone

ZONES_DIR = "JOBS_ZONES_DIR"
PROBE_NAMES = "JOBS_DNS_PROBE_NAMES"
SAMPLE_ZONES = Path(__file__).parent / "sample" / "zones"
DEFAULT_PROBE_NAMES = "localhost"
ZONE_SUFFIX = ".zone"

# Record types whose data names another host that should exist when it is inside the zone.
_TARGETS = {
    dns.rdatatype.NS: lambda rdata: rdata.target,
    dns.rdatatype.MX: lambda rdata: rdata.exchange,
    dns.rdatatype.SRV: lambda rdata: rdata.target,
    dns.rdatatype.CNAME: lambda rdata: rdata.target,
}
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_WHERE = re.compile(r".*:(\d+): (.*)", re.DOTALL)


class ZoneError(ValueError):
    """A zone file that cannot be read or parsed; the message names the file."""


class ResolveError(OSError):
    """One or more probed names did not resolve."""


def register(registry):
    """Add the DNS jobs to ``registry``."""
    registry.add(zone_check, name="dns_zone_check", category="dns", interval="5m", timeout="10m")
    registry.add(
        resolver_probe, name="dns_resolver_probe", category="dns", interval="1m", timeout="2m"
    )


def zone_check(ctx):
    """Check that every zone file parses, and log each zone's SOA serial."""
    folder = Path(ctx.settings.get(ZONES_DIR) or SAMPLE_ZONES)
    paths = zone_files(folder)
    records = warnings = 0
    for done, path in enumerate(paths):
        if ctx.cancelled:
            ctx.log.warning("cancelled after %d of %d zone files", done, len(paths))
            return f"cancelled after {done} of {len(paths)} zone files"
        ctx.progress(done / len(paths), f"checking {path.name}")
        zone = load_zone(path)
        count = sum(len(rdataset) for _, rdataset in zone.iterate_rdatasets())
        records += count
        ctx.log.info(
            "%s: serial %d, %d records", zone.origin.to_text(), zone.get_soa().serial, count
        )
        for problem in dangling_targets(zone):
            warnings += 1
            ctx.log.warning("%s: %s", path.name, problem)
    ctx.progress(1.0, f"checked {len(paths)} zone files")
    return f"{len(paths)} zones parsed, {records} records, {warnings} warnings"


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
    """The ``*.zone`` files in ``folder``, sorted by name; raise if there are none."""
    if not folder.is_dir():
        raise ZoneError(
            f"The zone folder {folder} does not exist; set {ZONES_DIR} to a folder of "
            f"*{ZONE_SUFFIX} files."
        )
    paths = sorted(p for p in folder.glob(f"*{ZONE_SUFFIX}") if p.is_file())
    if not paths:
        raise ZoneError(
            f"No *{ZONE_SUFFIX} files in {folder}; set {ZONES_DIR} to the folder that holds "
            "them, named after their zone (example.test.zone)."
        )
    return paths


def load_zone(path):
    """Parse the zone file at ``path``, whose origin is its name less ``.zone``."""
    origin = path.name.removesuffix(ZONE_SUFFIX) + "."
    try:
        return dns.zone.from_file(str(path), origin=origin, relativize=True)
    except dns.exception.SyntaxError as exc:
        # dnspython says "<filename>:<line>: <problem>"; keep the line, name the file once.
        match = _WHERE.fullmatch(str(exc))
        where = f", line {match.group(1)}: {match.group(2)}" if match else f": {exc}"
        raise ZoneError(f"Zone file {path}{where}") from exc
    except (dns.exception.DNSException, OSError, UnicodeError) as exc:
        problem = str(exc) or type(exc).__name__
        raise ZoneError(f"Zone file {path}: {problem}") from exc


def dangling_targets(zone):
    """Describe each NS, MX, SRV or CNAME record that points inside ``zone`` at nothing:
    a CNAME at a name with no records, the others at a name with no A or AAAA record."""
    problems = []
    for name, rdataset in zone.iterate_rdatasets():
        target_of = _TARGETS.get(rdataset.rdtype)
        if target_of is None:
            continue
        wanted = () if rdataset.rdtype == dns.rdatatype.CNAME else _ADDRESS_TYPES
        for rdata in rdataset:
            target = target_of(rdata).derelativize(zone.origin)
            if not target.is_subdomain(zone.origin):
                continue  # other zones are checked on their own
            where = f"{name} {dns.rdatatype.to_text(rdataset.rdtype)}"
            shown = target.relativize(zone.origin)
            node = zone.get_node(target)
            if node is None:
                problems.append(f"{where} points to {shown}, which does not exist")
            elif wanted and not any(node.get_rdataset(zone.rdclass, t) for t in wanted):
                problems.append(f"{where} points to {shown}, which has no A or AAAA record")
    return problems


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
