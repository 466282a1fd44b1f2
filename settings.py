"""Settings from environment variables, each with a default, each checked.

A bad value stops the server with a message that says what to write instead,
rather than being taken for true or false by accident.
"""

import os

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


class SettingError(ValueError):
    """An environment variable holds a value the app cannot use."""


def env_bool(environ, name, default):
    """A yes/no setting: 1/true/yes/on or 0/false/no/off."""
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise SettingError(f"Unexpected value {name}={raw!r}; use 1 or 0.")


def env_int(environ, name, default, *, minimum=None, maximum=None):
    """A whole-number setting within bounds."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingError(f"Unexpected value {name}={raw!r}; use a whole number.") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise SettingError(
            f"Unexpected value {name}={raw!r}; use a number from {minimum} to {maximum}."
        )
    return value


def env_float(environ, name, default, *, minimum):
    """A number setting (seconds, days) no smaller than ``minimum``."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingError(f"Unexpected value {name}={raw!r}; use a number.") from None
    if not value >= minimum or value == float("inf"):
        raise SettingError(f"Unexpected value {name}={raw!r}; use a number of at least {minimum}.")
    return value


def env_str(environ, name, default):
    """A text setting; surrounding spaces are dropped."""
    raw = environ.get(name)
    return default if raw is None or raw.strip() == "" else raw.strip()


def load(environ=None):
    """Every setting the app reads, as a dict of Flask config keys."""
    environ = os.environ if environ is None else environ
    instance = os.path.abspath(env_str(environ, "JOBS_INSTANCE_PATH", "instance"))
    return {
        "HOST": env_str(environ, "HOST", "127.0.0.1"),
        "PORT": env_int(environ, "PORT", 8000, minimum=1, maximum=65535),
        "JOBS_INSTANCE_PATH": instance,
        "JOBS_DEMO": env_bool(environ, "JOBS_DEMO", False),
        "JOBS_SCHEDULER": env_bool(environ, "JOBS_SCHEDULER", True),
        "JOBS_WORKERS": env_int(environ, "JOBS_WORKERS", 1, minimum=1, maximum=64),
        "JOBS_LEASE_SECONDS": env_float(environ, "JOBS_LEASE_SECONDS", 30.0, minimum=0.5),
        "JOBS_HISTORY_DAYS": env_float(environ, "JOBS_HISTORY_DAYS", 30.0, minimum=0.01),
        "DB_BUSY_TIMEOUT_SECONDS": env_float(environ, "JOBS_DB_BUSY_TIMEOUT", 5.0, minimum=0.05),
        "JOBS_ZONES_DIR": env_str(environ, "JOBS_ZONES_DIR", None),
        "JOBS_LEASES_FILE": env_str(environ, "JOBS_LEASES_FILE", None),
        "JOBS_DNS_PROBE_NAMES": env_str(environ, "JOBS_DNS_PROBE_NAMES", None),
        "SECRET_KEY": env_str(environ, "SECRET_KEY", None),
        "SESSION_HOURS": env_float(environ, "JOBS_SESSION_HOURS", 12.0, minimum=0.01),
        "LOGIN_FAILURES_PER_USER": env_int(
            environ, "JOBS_LOGIN_FAILURES_PER_USER", 10, minimum=1, maximum=10000
        ),
        "LOGIN_FAILURES_PER_ADDRESS": env_int(
            environ, "JOBS_LOGIN_FAILURES_PER_ADDRESS", 30, minimum=1, maximum=10000
        ),
        "SSE_HEARTBEAT_SECONDS": env_float(environ, "JOBS_SSE_HEARTBEAT", 15.0, minimum=0.05),
        "SSE_MAX_AGE_SECONDS": env_float(environ, "JOBS_SSE_MAX_AGE", 600.0, minimum=0.1),
        "SSE_SEND_TIMEOUT_SECONDS": env_float(environ, "JOBS_SSE_SEND_TIMEOUT", 30.0, minimum=0.1),
    }
