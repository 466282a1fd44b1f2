"""The built-in jobs, one module per category, and ``build_registry`` that collects them.

Settings, read from the app's settings mapping; each has a default:

- ``JOBS_DEMO`` (default off): also register the demo jobs (``jobs/demo.py``).
- ``JOBS_ZONES_DIR`` (default the shipped ``jobs/sample/zones/``): folder of ``*.zone``
  and ``*.zone.gz`` files, each named after its zone, that ``dns_zone_check`` parses.
- ``JOBS_DNS_PROBE_NAMES`` (default ``localhost``): comma-separated names that
  ``dns_resolver_probe`` looks up through the system resolver.
- ``JOBS_INSTANCE_PATH`` (default ``instance``, relative to the working directory): folder
  for files the jobs write; holds the default leases file.
- ``JOBS_LEASES_FILE`` (default ``<JOBS_INSTANCE_PATH>/dhcpd.leases``, first copied from
  ``jobs/sample/dhcpd.leases``): the ISC dhcpd leases file the dhcp jobs read and prune.
- ``JOBS_HISTORY_DAYS`` (default 30): how many days of run history ``history_retention``
  keeps.

Job functions read their settings from ``ctx.settings`` on each run, so only
``JOBS_DEMO`` is read here.
"""

from scheduler.registry import JobRegistry

from . import demo, dhcp, dns, system
from .dhcp import INSTANCE_PATH, LEASES_FILE
from .dns import PROBE_NAMES, ZONES_DIR
from .system import HISTORY_DAYS

DEMO = "JOBS_DEMO"

__all__ = [
    "DEMO",
    "HISTORY_DAYS",
    "INSTANCE_PATH",
    "LEASES_FILE",
    "PROBE_NAMES",
    "ZONES_DIR",
    "build_registry",
]


def build_registry(settings):
    """A new JobRegistry holding the built-in jobs, and the demo jobs if ``JOBS_DEMO`` is on."""
    registry = JobRegistry()
    for module in (dns, dhcp, system):
        module.register(registry)
    if settings.get(DEMO):
        demo.register(registry)
    return registry
