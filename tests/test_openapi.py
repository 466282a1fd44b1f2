"""The API against its OpenAPI document (routes/openapi.json): every /api route is in
it, and schemathesis, in-process as a signed-in admin, finds no server error and no
answer that breaks it.  The run is bounded and repeatable: a fixed seed, derandomized
generation and a cap on examples per operation."""

import json
import re
import threading
from functools import partial

import pytest
import schemathesis
from helpers import ADMIN_PASSWORD, admin_client, app_on, take_the_lease_by_hand
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from werkzeug.security import generate_password_hash

import accounts
from routes.openapi import DOCUMENT
from scheduler import JobRegistry

# Per operation and phase; with ten operations the whole run takes a few seconds.
MAX_EXAMPLES = 40
COOKIE = "codexdns_session"
# The first is the name the document's examples use.
JOB_NAMES = ["dns_zone_check", "failing", "held"]
CONFIG = {
    "seed": 20260105,
    "generation": {
        "deterministic": True,
        "database": "none",
        # The session cookie is the caller's (below), never generated.
        "with-security-parameters": False,
    },
    # A stream is read up to its first event (the snapshot), then closed.
    "max-stream-events": 1,
    # Every check but the two about which requests should be accepted: the controls
    # ignore any body but the token, and the interval's range (1s to 365d) is beyond
    # what a schema pattern says; test_api.py checks each refusal by hand.
    "checks": {
        "positive_data_acceptance": {"enabled": False},
        "negative_data_rejection": {"enabled": False},
    },
}


@pytest.fixture(autouse=True)
def quick_password_hashing(monkeypatch):
    """scrypt takes a tenth of a second a hash; these tests are about the API."""
    quick = partial(generate_password_hash, method="pbkdf2:sha256:1")
    monkeypatch.setattr(accounts, "generate_password_hash", quick)


def quick(ctx):
    """Return at once."""
    return "done"


def failing(ctx):
    """Fail at once, so that error fields are filled in."""
    raise RuntimeError("failed on purpose")


class Held:
    """A job whose first run stays open until the test ends, so Run Now answers 409."""

    def __init__(self):
        self.release = threading.Event()

    def __call__(self, ctx):
        """Wait for the end of the test."""
        ctx.progress(0.5, "half way")
        self.release.wait(30)


class SignedIn:
    """The session cookie of the admin that ``fuzzed`` signed in.  Given to schemathesis
    as the document's ``session`` scheme, so that its auth check can also send each
    request without it, and with a made-up one, and see 401."""

    cookie = None


@pytest.fixture
def fuzzed(tmp_path, clock):
    """An app with three small jobs (a quick stand-in under the name the document's
    examples use, one that fails, one held open) and an admin client signed in to it."""

    held = Held()
    registry = JobRegistry()
    registry.add(quick, name="dns_zone_check", category="dns", interval="1h")
    registry.add(failing, name="failing", category="demo", interval="5m")
    registry.add(held, name="held", category="demo", interval="1d", description="Held open.")
    app = app_on(
        tmp_path / "instance",
        clock,
        JOBS_REGISTRY=registry,
        SSE_HEARTBEAT_SECONDS=0.2,
        SSE_MAX_AGE_SECONDS=5.0,
    )
    app.extensions["accounts"].create_user("admin", ADMIN_PASSWORD, admin=True)
    engine = take_the_lease_by_hand(app.extensions["jobs"])
    client = admin_client(app)
    SignedIn.cookie = client.get_cookie(COOKIE).value
    yield client
    SignedIn.cookie = None
    held.release.set()
    engine.stop(grace=2)
    app.extensions["accounts"].close()
    engine.store.close()


schema = schemathesis.openapi.from_path(DOCUMENT, config=schemathesis.Config.from_dict(CONFIG))


@schema.hook
def flatmap_case(context, case):
    """Half the cases whose job name is valid name a job that exists, so that the
    controls get past 404 (a name generated to be invalid is left alone)."""
    path = case.path_parameters
    if not path or "name" not in path or case.meta.is_negative_at(ParameterLocation.PATH):
        return st.just(case)

    def naming(name):
        case.path_parameters = {**path, "name": name}
        return case

    return st.one_of(st.just(case), st.sampled_from(JOB_NAMES).map(naming))


@schema.auth(refresh_interval=None)
class SessionCookie:
    def get(self, case, context):
        return SignedIn.cookie

    def set(self, case, data, context):
        case.cookies = {**(case.cookies or {}), COOKIE: data}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # One app per operation, shared by its examples: state carries over, as in use.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_answers_as_its_document_says(case, fuzzed):
    if isinstance(case.body, dict) and "csrf_token" in case.body:
        case.body["csrf_token"] = fuzzed.csrf
    # This test's app, for the request and for the probes some checks send after it.
    case.operation.app = case.operation.schema.app = fuzzed.app
    # Cases of the coverage and examples phases are built before the admin signs in.
    schema.auth.set(case, schemathesis.AuthContext(operation=case.operation, app=fuzzed.app))
    case.call_and_validate(headers={"X-CSRFToken": fuzzed.csrf})


# -- the document and the app agree ----------------------------------------------------------


def document():
    with open(DOCUMENT) as handle:
        return json.load(handle)


def openapi_path(rule):
    """/api/jobs/<name>/run as OpenAPI writes it: /api/jobs/{name}/run."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def test_every_api_route_and_method_is_in_the_document(app):
    paths = document()["paths"]
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = openapi_path(rule)
        assert path in paths, f"{rule.rule} is not described in routes/openapi.json"
        documented = {method.upper() for method in paths[path] if method != "parameters"}
        assert rule.methods - {"HEAD", "OPTIONS"} == documented, rule.rule


def test_the_document_describes_no_route_the_app_lacks(app):
    served = {openapi_path(rule) for rule in app.url_map.iter_rules()}

    assert set(document()["paths"]) <= served


def test_the_document_is_served_as_written(admin):
    response = admin.get("/api/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == document()
    assert response.json["openapi"].startswith("3.")
