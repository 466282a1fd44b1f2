"""The DHCP jobs: pruning expired leases and counting active ones."""

import shutil
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from jobs import build_registry, dhcp
from jobs.dhcp import SAMPLE_LEASES, active_by_subnet, prune_expired, split_statements
from tests.job_context import job_run

JUNE_2026 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
NEW_YEAR_2025 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
SAMPLE = SAMPLE_LEASES.read_text()
SAMPLE_ACTIVE = ["192.0.2.101", "192.0.2.110", "192.0.2.104", "198.51.100.20", "198.51.100.22"]
SAMPLE_EXPIRED = ["192.0.2.100", "192.0.2.102", "198.51.100.21", "198.51.100.23"]


def lease(address, ends, extra=""):
    return f"lease {address} {{\n  starts 1 2025/06/02 08:00:00;\n  ends {ends};\n{extra}}}\n"


def addresses(text):
    return [body.split()[1] for _, body in split_statements(text) if body.startswith("lease ")]


@pytest.fixture
def pinned_clock(monkeypatch):
    """The jobs' wall clock, stopped at 1 June 2026."""
    monkeypatch.setattr(dhcp, "time", SimpleNamespace(time=lambda: JUNE_2026))


@pytest.fixture
def leases_file(tmp_path):
    path = tmp_path / "dhcpd.leases"
    shutil.copyfile(SAMPLE_LEASES, path)
    return path


def run(name, job):
    return build_registry({})[name].func(job.ctx)


def test_dhcp_jobs_are_registered_with_their_schedules():
    registry = build_registry({})
    prune, usage = registry["dhcp_lease_prune"], registry["dhcp_active_leases"]
    assert (prune.category, prune.interval_text, prune.timeout) == ("dhcp", "10m", 300)
    assert (usage.category, usage.interval_text, usage.timeout) == ("dhcp", "5m", 300)


def test_prune_drops_expired_leases_and_keeps_active_and_never_ending_ones():
    text, kept, pruned = prune_expired(SAMPLE, JUNE_2026)

    assert (kept, pruned) == (5, 5)
    assert addresses(text) == SAMPLE_ACTIVE
    assert text.count("ends never;") == 2


def test_prune_drops_entries_superseded_by_a_later_one_for_the_same_address():
    text, kept, pruned = prune_expired(SAMPLE, NEW_YEAR_2025)

    assert (kept, pruned) == (9, 1)
    assert addresses(text).count("192.0.2.104") == 1
    assert "ends 0 2036/02/10 06:00:00;" in text


def test_a_later_expired_entry_does_not_bring_back_an_earlier_active_one():
    renewed = lease("192.0.2.5", "2 2036/01/01 00:00:00")
    released = lease("192.0.2.5", "1 2026/01/05 00:00:00")

    new_text, kept, pruned = prune_expired(renewed + released, JUNE_2026)

    assert (addresses(new_text), kept, pruned) == ([], 0, 2)


def test_a_lease_ending_exactly_now_is_expired():
    text = lease("192.0.2.5", "1 2026/06/01 00:00:00")

    assert prune_expired(text, JUNE_2026)[1:] == (0, 1)
    assert prune_expired(text, JUNE_2026 - 1)[1:] == (1, 0)


def test_ends_given_as_epoch_seconds_are_understood():
    text = lease("192.0.2.5", f"epoch {int(JUNE_2026)}") + "# Mon Jun 01 00:00:00 2026\n"

    assert prune_expired(text, JUNE_2026 - 1)[1:] == (1, 0)
    assert prune_expired(text, JUNE_2026)[1:] == (0, 1)


def test_a_lease_without_an_end_is_kept():
    text = "lease 192.0.2.5 {\n  binding state active;\n}\n"

    assert prune_expired(text, JUNE_2026) == (text, 1, 0)


def test_nothing_to_prune_leaves_the_text_exactly_as_it_was():
    text, kept, pruned = prune_expired(SAMPLE, NEW_YEAR_2025)
    again = prune_expired(text, NEW_YEAR_2025)

    assert again == (text, 9, 0)


def test_comments_and_other_statements_are_kept():
    text, _, _ = prune_expired(SAMPLE, JUNE_2026)

    assert text.startswith("# The format of this file is documented")
    assert "# authoring-byte-order entry is generated, DO NOT DELETE\n" in text
    assert "authoring-byte-order little-endian;" in text


def test_ipv6_blocks_are_left_alone():
    ia_na = (
        'ia-na "\\001\\000\\000\\000" {\n  cltt 1 2025/06/02 08:00:00;\n'
        "  iaaddr 2001:db8::5 {\n    ends 1 2025/06/02 20:00:00;\n  }\n}\n"
    )

    assert prune_expired(ia_na, JUNE_2026) == (ia_na, 0, 0)


def test_quoted_braces_and_semicolons_do_not_split_a_lease():
    text = lease("192.0.2.5", "never", '  client-hostname "odd;name{}\\"x";\n')

    assert prune_expired(text, JUNE_2026) == (text, 1, 0)


def test_an_unreadable_end_time_names_the_lease():
    with pytest.raises(ValueError, match=r"Lease 192\.0\.2\.5: cannot read 'ends tomorrow'"):
        prune_expired(lease("192.0.2.5", "tomorrow"), JUNE_2026)


def test_an_unclosed_lease_block_names_its_line():
    with pytest.raises(ValueError, match=r"Line 2: statement has no closing"):
        prune_expired("# header\nlease 192.0.2.5 {\n  ends never;\n", JUNE_2026)


def test_an_unclosed_string_names_its_line():
    with pytest.raises(ValueError, match=r"Line 1: string has no closing quote"):
        prune_expired('server-duid "abc;\n', JUNE_2026)


def test_active_leases_are_counted_per_subnet():
    assert active_by_subnet(SAMPLE, JUNE_2026) == {"192.0.2.0/24": 3, "198.51.100.0/24": 2}
    assert active_by_subnet(SAMPLE, NEW_YEAR_2025) == {"192.0.2.0/24": 5, "198.51.100.0/24": 4}


def test_lease_prune_rewrites_the_file_keeping_active_leases(leases_file, pinned_clock):
    job = job_run("dhcp_lease_prune", settings={"JOBS_LEASES_FILE": str(leases_file)})

    assert run("dhcp_lease_prune", job) == "kept 5 leases, pruned 5"
    assert addresses(leases_file.read_text()) == SAMPLE_ACTIVE
    assert f"INFO {leases_file}: kept 5 leases, pruned 5" in job.lines()
    assert [p.name for p in leases_file.parent.iterdir()] == ["dhcpd.leases"]


def test_lease_prune_keeps_the_file_mode(leases_file, pinned_clock):
    leases_file.chmod(0o640)

    run("dhcp_lease_prune", job_run(settings={"JOBS_LEASES_FILE": str(leases_file)}))

    assert leases_file.stat().st_mode & 0o777 == 0o640


def test_lease_prune_leaves_the_file_untouched_when_nothing_expired(leases_file, monkeypatch):
    monkeypatch.setattr(dhcp, "time", SimpleNamespace(time=lambda: NEW_YEAR_2025))
    leases_file.write_text(prune_expired(SAMPLE, NEW_YEAR_2025)[0])
    before = leases_file.stat()

    job = job_run(settings={"JOBS_LEASES_FILE": str(leases_file)})

    assert run("dhcp_lease_prune", job) == "kept 9 leases, pruned 0"
    assert leases_file.stat().st_mtime_ns == before.st_mtime_ns


def test_lease_prune_gives_up_when_the_file_changes_meanwhile(
    leases_file, pinned_clock, monkeypatch
):
    def prune_while_dhcpd_appends(text, now):
        with leases_file.open("a") as file:
            file.write(lease("192.0.2.99", "never"))
        return prune_expired(text, now)

    monkeypatch.setattr(dhcp, "prune_expired", prune_while_dhcpd_appends)
    job = job_run(settings={"JOBS_LEASES_FILE": str(leases_file)})

    with pytest.raises(RuntimeError, match="changed while it was being pruned"):
        run("dhcp_lease_prune", job)
    assert leases_file.read_text() == SAMPLE + lease("192.0.2.99", "never")
    assert [p.name for p in leases_file.parent.iterdir()] == ["dhcpd.leases"]


def test_the_default_leases_file_is_a_copy_of_the_sample_in_the_instance(tmp_path, pinned_clock):
    instance = tmp_path / "instance"
    job = job_run(settings={"JOBS_INSTANCE_PATH": str(instance)})

    assert run("dhcp_lease_prune", job) == "kept 5 leases, pruned 5"
    assert addresses((instance / "dhcpd.leases").read_text()) == SAMPLE_ACTIVE
    assert SAMPLE_LEASES.read_text() == SAMPLE


def test_a_missing_leases_file_names_the_setting(tmp_path):
    job = job_run(settings={"JOBS_LEASES_FILE": str(tmp_path / "none.leases")})

    with pytest.raises(FileNotFoundError, match="set JOBS_LEASES_FILE"):
        run("dhcp_lease_prune", job)


def test_active_leases_job_logs_each_subnet(leases_file, pinned_clock):
    job = job_run(settings={"JOBS_LEASES_FILE": str(leases_file)})

    assert run("dhcp_active_leases", job) == "5 active leases in 2 subnets"
    assert job.lines() == [
        "INFO 192.0.2.0/24: 3 active leases",
        "INFO 198.51.100.0/24: 2 active leases",
    ]
    assert leases_file.read_text() == SAMPLE
