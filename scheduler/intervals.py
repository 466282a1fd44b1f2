"""Interval text such as ``30s``, ``5m``, ``1h30m`` or ``1d``, parsed and formatted."""

import re

from .errors import IntervalError

MIN_SECONDS = 1
MAX_SECONDS = 365 * 86400
MAX_LENGTH = 32
EXAMPLES = "30s, 5m, 1h, 1d or 1h30m"

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_GRAMMAR = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")


def parse_interval(text):
    """Return the number of seconds that ``text`` names, or raise IntervalError.

    Accepted: whole numbers with the lowercase units d, h, m, s, each at most
    once and largest first, 1 s to 365 d in all, at most 32 characters after
    trimming surrounding whitespace.
    """
    if not isinstance(text, str):
        raise IntervalError(f"An interval is text such as {EXAMPLES}; got {type(text).__name__}.")
    stripped = text.strip()
    if not stripped:
        raise IntervalError(f"Enter an interval such as {EXAMPLES}.")
    if len(stripped) > MAX_LENGTH:
        raise IntervalError(f"An interval is at most {MAX_LENGTH} characters, such as {EXAMPLES}.")
    match = _GRAMMAR.fullmatch(stripped)
    if match is None:
        raise IntervalError(_explain_bad_text(stripped))
    seconds = sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True) if n)
    if seconds < MIN_SECONDS:
        raise IntervalError(f"An interval must be at least 1s; try {EXAMPLES}.")
    if seconds > MAX_SECONDS:
        raise IntervalError(f"An interval must be at most 365d; try {EXAMPLES}.")
    return seconds


def format_interval(seconds):
    """Return the shortest canonical text for ``seconds`` (5400 gives ``1h30m``)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise IntervalError(f"An interval is a whole number of seconds; got {seconds!r}.")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise IntervalError(f"An interval must be from 1s to 365d; got {seconds} seconds.")
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _explain_bad_text(text):
    """Say what is wrong with text that does not match the grammar, and what to type."""
    if text.startswith("-"):
        return f"An interval cannot be negative; use {EXAMPLES}."
    if "." in text or "," in text:
        return f"An interval uses whole numbers, not fractions ({text!r}); use {EXAMPLES}."
    if any(c.isspace() for c in text):
        return f"Write an interval without spaces, such as {EXAMPLES}."
    if any(c.isupper() for c in text):
        return f"Units are lowercase d, h, m, s: use {text.lower()!r} instead of {text!r}."
    if not re.fullmatch(r"[0-9a-z]+", text):
        return f"{text!r} is not an interval; use {EXAMPLES}."
    units = re.findall(r"[a-z]+", text)
    unknown = [u for u in units if u not in ("d", "h", "m", "s")]
    if unknown:
        return f"Unknown unit {unknown[0]!r}; use d, h, m or s, as in {EXAMPLES}."
    if text.isdigit():
        return f"Add a unit to {text!r}, such as {text}s or {text}m."
    if len(set(units)) < len(units):
        return f"Each unit may appear once ({text!r}); use {EXAMPLES}."
    if units:
        return f"Write units largest first, d then h then m then s ({text!r}); use {EXAMPLES}."
    return f"{text!r} is not an interval; use {EXAMPLES}."
