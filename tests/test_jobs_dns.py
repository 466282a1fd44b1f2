"""The DNS jobs: zone file check and resolver probe."""

import shutil

import pytest

from jobs import build_registry
from jobs.dns import SAMPLE_ZONES, ResolveError, ZoneError, load_zone, probe_names
from tests.job_context import job_run

GOOD_ZONE = """$TTL 3600
@    IN SOA ns1 hostmaster 2026010101 3600 900 604800 300
@    IN NS  ns1
ns1  IN A   192.0.2.1
"""


def run(name, job_run):
    return build_registry({})[name].func(job_run.ctx)


@pytest.fixture
def zones(tmp_path):
    """A copy of the sample zones that a test may change."""
    folder = tmp_path / "zones"
    shutil.copytree(SAMPLE_ZONES, folder)
    return folder


def test_dns_jobs_are_registered_with_their_schedules():
    registry = build_registry({})
    check, probe = registry["dns_zone_check"], registry["dns_resolver_probe"]
    assert (check.category, check.interval_text, check.timeout) == ("dns", "5m", 600)
    assert (probe.category, probe.interval_text, probe.timeout) == ("dns", "1m", 120)


def test_zone_check_parses_the_sample_zones_and_logs_their_serials():
    job = job_run("dns_zone_check")

    result = run("dns_zone_check", job)

    assert result == "3 zones parsed, 43 records, 0 warnings"
    assert "INFO example.test.: serial 2026112501, 19 records" in job.lines()
    assert "INFO lab.internal.: serial 2026112003, 14 records" in job.lines()
    assert "INFO 2.0.192.in-addr.arpa.: serial 2026111801, 10 records" in job.lines()


def test_zone_check_reports_progress_for_each_zone_file():
    job = job_run("dns_zone_check")

    run("dns_zone_check", job)

    assert job.progress == [
        (0.0, "checking 2.0.192.in-addr.arpa.zone"),
        (pytest.approx(1 / 3), "checking example.test.zone"),
        (pytest.approx(2 / 3), "checking lab.internal.zone"),
        (1.0, "checked 3 zone files"),
    ]


def test_zone_check_reads_the_folder_from_the_setting(tmp_path):
    (tmp_path / "only.test.zone").write_text(GOOD_ZONE)
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(tmp_path)})

    assert run("dns_zone_check", job) == "1 zones parsed, 3 records, 0 warnings"
    assert "INFO only.test.: serial 2026010101, 3 records" in job.lines()


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

    with pytest.raises(ZoneError, match=r"No \*\.zone files in"):
        run("dns_zone_check", job)


def test_records_pointing_at_missing_hosts_are_warnings(tmp_path):
    (tmp_path / "warn.test.zone").write_text(
        GOOD_ZONE + '@    IN MX  10 mail\nold  IN CNAME gone\nmail IN TXT "no address"\n'
    )
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(tmp_path)})

    assert run("dns_zone_check", job) == "1 zones parsed, 6 records, 2 warnings"
    assert "WARNING warn.test.zone: @ MX points to mail, which has no A or AAAA record" in (
        job.lines()
    )
    assert "WARNING warn.test.zone: old CNAME points to gone, which does not exist" in job.lines()


def test_records_pointing_outside_the_zone_are_not_checked(tmp_path):
    (tmp_path / "out.test.zone").write_text(GOOD_ZONE + "@ IN MX 10 mail.example.test.\n")
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(tmp_path)})

    assert run("dns_zone_check", job).endswith(", 0 warnings")


def test_cancellation_stops_the_zone_check_after_the_current_file(zones):
    job = job_run("dns_zone_check", settings={"JOBS_ZONES_DIR": str(zones)}, cancel_after=1)

    result = run("dns_zone_check", job)

    assert result == "cancelled after 1 of 3 zone files"
    assert len(job.progress) == 1
    assert not any("example.test." in line for line in job.lines())
    assert "WARNING cancelled after 1 of 3 zone files" in job.lines()


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
