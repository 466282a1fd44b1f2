"""The DNS jobs: zone file check and resolver probe."""

import gzip
import shutil

import pytest

from jobs import build_registry
from jobs.dns import SAMPLE_ZONES, ResolveError, ZoneError, load_zone, probe_names, zone_name
from tests.job_context import job_run

GOOD_ZONE = """$TTL 3600
@    IN SOA ns1 hostmaster 2026010101 3600 900 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.1
"""


def hosts_zone(count):
    """GOOD_ZONE and ``count`` hosts, each with an A and an AAAA record."""
    hosts = "".join(
        f"h{n} IN A 10.0.{n // 200}.{n % 200 + 1}\n   IN AAAA 2001:db8::{n + 1:x}\n"
        for n in range(count)
    )
    return GOOD_ZONE + hosts


def run(name, job_run):
    return build_registry({})[name].func(job_run.ctx)


def check_zones(folder, **options):
    """Run the zone check on ``folder``; its result and the JobRun."""
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(folder)}, **options)
    return run("dns_zone_check", job), job


def warnings_for(tmp_path, extra):
    """The warning lines of a check of GOOD_ZONE with ``extra`` records added."""
    (tmp_path / "lint.test.zone").write_text(GOOD_ZONE + extra)
    _, job = check_zones(tmp_path)
    return [line for line in job.lines() if line.startswith("WARNING ")]


@pytest.fixture
def zones(tmp_path):
    """A copy of the small sample zones (not the large generated one) that a test may change."""
    folder = tmp_path / "zones"
    shutil.copytree(SAMPLE_ZONES, folder, ignore=shutil.ignore_patterns("*.gz"))
    return folder


def test_dns_jobs_are_registered_with_their_schedules():
    registry = build_registry({})
    check, probe = registry["dns_zone_check"], registry["dns_resolver_probe"]
    assert (check.category, check.interval_text, check.timeout) == ("dns", "5m", 600)
    assert (probe.category, probe.interval_text, probe.timeout) == ("dns", "1m", 120)


def test_zone_check_parses_the_small_sample_zones_and_logs_their_serials(zones):
    result, job = check_zones(zones)

    assert result == "3 zones checked, 43 records, 0 warnings"
    assert "INFO example.test.: serial 2026112501, 19 records" in job.lines()
    assert "INFO lab.internal.: serial 2026112003, 14 records" in job.lines()
    assert "INFO 2.0.192.in-addr.arpa.: serial 2026111801, 10 records" in job.lines()


@pytest.mark.slow
def test_the_shipped_sample_zones_check_without_errors_in_a_few_seconds():
    job = job_run("dns_zone_check")

    result = run("dns_zone_check", job)

    assert result == "4 zones checked, 21,127 records, 8 warnings"
    assert "INFO hosts.lab.internal.: serial 2026112501, 21084 records" in job.lines()
    # The generated zone keeps a few leftovers on purpose, one of each kind the check finds.
    assert (
        "WARNING hosts.lab.internal.zone.gz: 8 warnings (missing target: 3, duplicate address: 1,"
        " bad host name: 1, alias target: 1, TTL out of range: 1, CNAME loop: 1)"
    ) in job.lines()
    assert not any(line.startswith("ERROR") for line in job.lines())
    assert len(job.progress) > 90


def test_progress_is_reported_often_and_only_goes_up(tmp_path):
    (tmp_path / "big.test.zone").write_text(hosts_zone(300))

    result, job = check_zones(tmp_path)

    assert result == "1 zones checked, 603 records, 0 warnings"
    fractions = [fraction for fraction, _ in job.progress]
    assert len(fractions) >= 50
    assert fractions == sorted(fractions)
    assert job.progress[-1] == (1.0, "checked 1 zone files")
    messages = [message for _, message in job.progress]
    assert "big.test: read 1 records" in messages
    assert any(message.startswith("big.test: checked ") for message in messages)
    assert any(message.endswith(" of 302 names") for message in messages)


def test_progress_covers_all_zone_files_by_their_size(tmp_path):
    (tmp_path / "a.test.zone").write_text(hosts_zone(100))
    (tmp_path / "b.test.zone").write_text(hosts_zone(100))

    _, job = check_zones(tmp_path)

    first_of_b = next(fraction for fraction, message in job.progress if message.startswith("b."))
    assert first_of_b == pytest.approx(0.5, abs=0.02)


def test_zone_check_reads_the_folder_from_the_setting(tmp_path):
    (tmp_path / "only.test.zone").write_text(GOOD_ZONE)

    result, job = check_zones(tmp_path)

    assert result == "1 zones checked, 3 records, 0 warnings"
    assert "INFO only.test.: serial 2026010101, 3 records" in job.lines()


def test_gzipped_zone_files_are_read_with_the_plain_ones(tmp_path):
    (tmp_path / "packed.test.zone.gz").write_bytes(gzip.compress(GOOD_ZONE.encode()))
    (tmp_path / "plain.test.zone").write_text(GOOD_ZONE)

    result, job = check_zones(tmp_path)

    assert result == "2 zones checked, 6 records, 0 warnings"
    assert "INFO packed.test.: serial 2026010101, 3 records" in job.lines()


def test_a_zone_is_named_after_its_file():
    assert zone_name(SAMPLE_ZONES / "example.test.zone") == "example.test"
    assert zone_name(SAMPLE_ZONES / "hosts.lab.internal.zone.gz") == "hosts.lab.internal"


def test_a_truncated_gzip_zone_file_is_an_error_naming_it(tmp_path):
    packed = gzip.compress(hosts_zone(50).encode())
    (tmp_path / "cut.test.zone.gz").write_bytes(packed[: len(packed) // 2])

    with pytest.raises(ZoneError, match=r"cut\.test\.zone\.gz: Compressed file ended"):
        check_zones(tmp_path)


def test_a_zone_with_a_syntax_error_makes_the_check_raise_naming_the_file(zones):
    (zones / "broken.test.zone").write_text(GOOD_ZONE + "www  IN A   192.0.2.300\n")
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(zones)})

    with pytest.raises(ZoneError, match=r"broken\.test\.zone, line \d+: .*malformed"):
        run("dns_zone_check", job)


def test_a_zone_with_an_unknown_record_type_names_the_type(tmp_path):
    path = tmp_path / "odd.test.zone"
    path.write_text(GOOD_ZONE + "www  IN FOO 192.0.2.3\n")

    with pytest.raises(ZoneError, match=r"odd\.test\.zone, line 5: unknown rdatatype 'FOO'"):
        load_zone(path)


def test_a_zone_without_an_soa_record_is_rejected(tmp_path):
    path = tmp_path / "nosoa.test.zone"
    path.write_text("$TTL 3600\n@ IN NS ns1\nns1 IN A 192.0.2.1\n")

    with pytest.raises(ZoneError, match=r"nosoa\.test\.zone: .*no SOA"):
        load_zone(path)


def test_a_zone_whose_name_does_not_match_its_origin_is_rejected(tmp_path):
    path = tmp_path / "other.test.zone"
    path.write_text("$ORIGIN example.test.\n" + GOOD_ZONE)

    with pytest.raises(ZoneError, match=r"other\.test\.zone"):
        load_zone(path)


def test_a_missing_zone_folder_names_the_setting(tmp_path):
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(tmp_path / "nope")})

    with pytest.raises(ZoneError, match="does not exist; set JOBS_ZONES_DIR"):
        run("dns_zone_check", job)


def test_a_folder_without_zone_files_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a zone")
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(tmp_path)})

    with pytest.raises(ZoneError, match=r"No \*\.zone or \*\.zone\.gz files in"):
        run("dns_zone_check", job)


def test_a_cname_beside_other_records_is_an_error_naming_the_file_line_and_name(tmp_path):
    (tmp_path / "clash.test.zone").write_text(
        GOOD_ZONE + "www  IN CNAME ns1\nmail IN A 192.0.2.25\nwww  IN A 192.0.2.80\n"
    )

    with pytest.raises(
        ZoneError, match=r"clash\.test\.zone, line 7: www has a CNAME and other records; "
    ):
        check_zones(tmp_path)


def test_records_pointing_at_missing_hosts_are_warnings(tmp_path):
    (tmp_path / "warn.test.zone").write_text(
        GOOD_ZONE + '@    IN MX  10 mail\nold  IN CNAME gone\nmail IN TXT "no address"\n'
    )

    result, job = check_zones(tmp_path)

    assert result == "1 zones checked, 6 records, 2 warnings"
    assert (
        "WARNING warn.test.zone: 2 warnings (target without address: 1, missing target: 1)"
        in job.lines()
    )
    assert "WARNING warn.test.zone: @ MX points to mail, which has no A or AAAA record" in (
        job.lines()
    )
    assert "WARNING warn.test.zone: old CNAME points to gone, which does not exist" in job.lines()


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        (
            "_sip._udp IN SRV 10 60 5060 sip\n",
            "_sip._udp SRV points to sip, which does not exist",
        ),
        (
            "@ IN MX 10 smtp\nsmtp IN CNAME ns1\n",
            "@ MX points to smtp, which is a CNAME; point it at the host's own name "
            "(RFC 2181 10.3)",
        ),
        (
            "a IN CNAME b\nb IN CNAME c\nc IN CNAME a\n",
            "a CNAME loops back to itself: a -> b -> c -> a",
        ),
        (
            "www IN A 192.0.2.1\n",
            "www A 192.0.2.1 is also the address of ns1",
        ),
        (
            "old_pc IN A 192.0.2.9\n   IN AAAA 2001:db8::9\n",
            "old_pc has an address but is not a host name; use letters, digits and hyphens",
        ),
        (
            "moving 5 IN A 192.0.2.7\n",
            "moving A has TTL 5; use 60 to 604800 (a week)",
        ),
    ],
    ids=["missing-target", "alias-target", "cname-loop", "duplicate", "host-name", "ttl"],
)
def test_the_lint_warns_once_about_each_problem(tmp_path, extra, warning):
    lines = warnings_for(tmp_path, extra)

    # The count of each kind comes first, then the warning itself.
    assert lines[1:] == [f"WARNING lint.test.zone: {warning}"]


def test_the_lint_accepts_wildcards_srv_names_and_names_outside_the_zone(tmp_path):
    extra = (
        "* IN A 192.0.2.8\n_ldap._tcp IN SRV 0 100 389 ns1\n"
        "@ IN MX 10 mail.example.test.\n@ IN MX 0 .\nalias IN CNAME www.example.test.\n"
    )

    assert warnings_for(tmp_path, extra) == []


def test_many_warnings_of_a_kind_are_counted_with_a_few_examples(tmp_path):
    extra = "".join(f"old{n} IN CNAME gone{n}\n" for n in range(40))

    lines = warnings_for(tmp_path, extra)

    assert lines[0] == "WARNING lint.test.zone: 40 warnings (missing target: 40)"
    assert lines[-1] == "WARNING lint.test.zone: 35 more missing target warnings"
    assert len(lines) == 7


def test_cancellation_stops_the_zone_check_in_the_middle_of_a_zone(tmp_path):
    (tmp_path / "big.test.zone").write_text(hosts_zone(300))

    result, job = check_zones(tmp_path, cancel_after=3)

    assert result == "cancelled after 0 of 1 zone files"
    assert len(job.progress) == 3
    assert job.progress[-1][0] < 0.1
    assert not any(line.startswith("INFO big.test.") for line in job.lines())
    assert "WARNING cancelled after 0 of 1 zone files" in job.lines()


def test_cancellation_in_a_later_zone_file_keeps_what_the_earlier_ones_found(tmp_path):
    (tmp_path / "a.test.zone").write_text(hosts_zone(100))
    (tmp_path / "b.test.zone").write_text(hosts_zone(100))
    _, whole = check_zones(tmp_path)
    first_of_b = next(n for n, (_, message) in enumerate(whole.progress, 1) if "b.test" in message)

    result, job = check_zones(tmp_path, cancel_after=first_of_b)

    assert result == "cancelled after 1 of 2 zone files"
    assert "INFO a.test.: serial 2026010101, 203 records" in job.lines()


def test_resolver_probe_of_localhost_succeeds():
    job = job_run("dns_resolver_probe")

    assert run("dns_resolver_probe", job) == "1 names resolved"
    assert any(line.startswith("INFO localhost: ") and " ms, " in line for line in job.lines())
    assert job.progress == [(0.0, "resolving localhost"), (1.0, "probed 1 names")]


def test_resolver_probe_of_an_invalid_name_fails_naming_it():
    settings = {"JOBS_DNS_PROBE_NAMES": "no-such-host.invalid, localhost"}
    job = job_run("dns_resolver_probe", settings=settings)

    with pytest.raises(ResolveError, match=r"Could not resolve no-such-host\.invalid \("):
        run("dns_resolver_probe", job)
    # The other names are still probed, so one failure does not hide the rest.
    assert any(line.startswith("INFO localhost: ") for line in job.lines())
    assert any(line.startswith("ERROR no-such-host.invalid: failed") for line in job.lines())


def test_resolver_probe_stops_when_cancelled():
    settings = {"JOBS_DNS_PROBE_NAMES": "localhost,localhost,localhost"}
    job = job_run("dns_resolver_probe", settings=settings, cancel_after=1)

    assert run("dns_resolver_probe", job) == "cancelled after 1 of 3 names"


def test_probe_names_are_split_on_commas_and_trimmed():
    assert probe_names({"JOBS_DNS_PROBE_NAMES": " a.test ,b.test,, "}) == ["a.test", "b.test"]
    assert probe_names({}) == ["localhost"]


def test_a_probe_names_setting_without_names_is_rejected():
    with pytest.raises(ValueError, match="JOBS_DNS_PROBE_NAMES names no host"):
        probe_names({"JOBS_DNS_PROBE_NAMES": " , "})
