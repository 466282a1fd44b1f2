import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import IntervalError, format_interval, parse_interval
from scheduler.intervals import MAX_SECONDS


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("  90m\t", 5400),
        ("365d", MAX_SECONDS),
        ("1s", 1),
    ],
)
def test_it_parses_valid_intervals(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "Enter an interval"),
        ("   ", "Enter an interval"),
        ("0s", "at least 1s"),
        ("0m0s", "at least 1s"),
        ("-5m", "negative"),
        ("1.5h", "whole numbers"),
        ("5M", "use '5m'"),
        ("10x", "Unknown unit 'x'"),
        ("5min", "Unknown unit 'min'"),
        ("5m5m", "once"),
        ("30m1h", "largest first"),
        ("366d", "at most 365d"),
        ("10", "Add a unit"),
        ("1h 30m", "without spaces"),
        ("abc", "Unknown unit"),
        ("1" * 30 + "s" + "x" * 5, "at most 32 characters"),
        ("٣s", "not an interval"),
    ],
)
def test_it_rejects_bad_text_with_a_message_that_shows_valid_examples(text, hint):
    with pytest.raises(IntervalError) as info:
        parse_interval(text)
    message = str(info.value)
    assert hint in message
    assert "30s" in message or "'5m'" in message or "10s" in message


@pytest.mark.parametrize("value", [None, 5, 5.0, b"5m", ["5m"]])
def test_it_rejects_values_that_are_not_text(value):
    with pytest.raises(IntervalError, match="text such as"):
        parse_interval(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90 * 60, "1h30m"), (86400, "1d"), (86401, "1d1s"), (59, "59s"), (3600 * 25, "1d1h")],
)
def test_it_formats_the_shortest_canonical_text(seconds, text):
    assert format_interval(seconds) == text


@pytest.mark.parametrize("value", [0, -1, MAX_SECONDS + 1, 1.5, True, "5m", None])
def test_it_refuses_to_format_what_is_not_an_interval(value):
    with pytest.raises(IntervalError):
        format_interval(value)


@given(st.integers(min_value=1, max_value=MAX_SECONDS))
def test_parse_of_format_is_identity_over_the_whole_range(seconds):
    assert parse_interval(format_interval(seconds)) == seconds


@given(st.integers(min_value=1, max_value=MAX_SECONDS))
def test_formatted_text_is_accepted_and_canonical(seconds):
    text = format_interval(seconds)
    assert len(text) <= 32
    assert format_interval(parse_interval(text)) == text


@given(st.text(max_size=40))
def test_any_text_either_parses_in_range_or_raises_interval_error(text):
    try:
        seconds = parse_interval(text)
    except IntervalError:
        return
    assert 1 <= seconds <= MAX_SECONDS
