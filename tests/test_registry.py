"""Defining jobs: a registry call or decorator that checks what it is given."""

import pytest

from scheduler import JobDefinitionError, JobRegistry


def noop(ctx):
    """Do nothing, quickly."""


def test_the_decorator_takes_name_and_description_from_the_function():
    jobs = JobRegistry()

    @jobs.job(category="dns", interval="5m", timeout="1m")
    def check_zones(ctx):
        """Check every zone file.

        More words that are not part of the description."""

    definition = jobs["check_zones"]
    assert (definition.name, definition.category) == ("check_zones", "dns")
    assert definition.description == "Check every zone file."
    assert (definition.interval, definition.timeout, definition.interval_text) == (300, 60, "5m")
    assert check_zones.__name__ == "check_zones"  # the function itself is unchanged
    assert jobs.names() == ["check_zones"] and "check_zones" in jobs and len(jobs) == 1


def test_intervals_may_be_given_as_whole_seconds():
    jobs = JobRegistry()
    assert jobs.add(noop, name="a", category="dns", interval=90).interval_text == "1m30s"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "Bad Name"}, "must be 1-64 characters"),
        ({"name": ""}, "must be 1-64 characters"),
        ({"name": None}, "must be 1-64 characters"),
        ({"name": "x" * 65}, "must be 1-64 characters"),
        ({"category": "DNS"}, "lowercase word"),
        ({"category": ""}, "lowercase word"),
        ({"interval": "5 minutes"}, "Bad interval of job 'ok'"),
        ({"interval": 0}, "Bad interval"),
        ({"interval": 1.5}, "Bad interval"),
        ({"timeout": "-1s"}, "Bad timeout"),
        ({"description": "two\nlines"}, "one line"),
        ({"description": "x" * 201}, "one line of at most 200"),
        ({"description": "   "}, "needs a one-line description"),
    ],
)
def test_a_bad_definition_is_refused_with_what_to_write(options, message):
    jobs = JobRegistry()
    arguments = {
        "name": "ok",
        "category": "dns",
        "interval": "5m",
        "description": "Fine.",
        **options,
    }
    with pytest.raises(JobDefinitionError, match=message):
        jobs.add(noop, **arguments)
    assert len(jobs) == 0


def test_a_job_without_description_or_docstring_is_refused():
    jobs = JobRegistry()
    with pytest.raises(JobDefinitionError, match="needs a one-line description"):
        jobs.add(lambda ctx: None, name="anon", category="dns", interval="5m")


def test_names_are_unique():
    jobs = JobRegistry()
    jobs.add(noop, name="zones", category="dns", interval="5m")
    with pytest.raises(JobDefinitionError, match="already registered"):
        jobs.add(noop, name="zones", category="dhcp", interval="1m")


def test_a_job_needs_a_function():
    with pytest.raises(JobDefinitionError, match="needs a function"):
        JobRegistry().add("not callable", name="x", category="dns", interval="5m")


def test_two_registries_share_nothing():
    first, second = JobRegistry(), JobRegistry()
    first.add(noop, name="zones", category="dns", interval="5m")
    assert "zones" not in second
