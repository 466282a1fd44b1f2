"""Browser tests: Debian's Chromium, driven by Playwright, against a real gunicorn+gevent
server started on a free loopback port.

One browser serves the whole session; each test module gets its own server (tests
that change a job put it back afterwards) and each test its own browser context,
signed in through the form like a person would.
"""

import contextlib

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import (
    AXE,
    CHROMIUM,
    VIEWPORT,
    restore_demo_jobs,
    sign_in,
)
from tests.server_support import Session, read_password, running_server
from tools.screenshots import CHROMIUM_ARGS

# What a user sees arrives in well under a second; the margin is for a busy 2-core machine.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, for the whole session."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"The browser tests need Debian's Chromium at {CHROMIUM}: "
            "run `sudo apt-get install chromium` (make test installs it as root on Debian).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def axe_script():
    """axe-core's script, installed from the npm registry by `make test`."""
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run npm ci (make test does).", pytrace=False)
    return AXE


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """Start real servers (``running_server`` options); all stop when the module ends."""
    with contextlib.ExitStack() as stack:

        def start(name, **options):
            home = tmp_path_factory.mktemp(name)
            running = stack.enter_context(
                running_server(home / "instance", home, name=name, **options)
            )
            running.admin_password = read_password(home / "instance")
            return running

        yield start


@pytest.fixture(scope="module")
def server(start_server, request):
    """This module's server, with the demo jobs; ``SERVER_OPTIONS`` in the module
    (for instance ``{"env": {...}}``) change how it starts."""
    name = request.module.__name__.rpartition(".")[2]
    return start_server(name, **getattr(request.module, "SERVER_OPTIONS", {}))


@pytest.fixture(scope="module")
def api_session(server):
    """An HTTP session signed in as admin, to change and read state from the test."""
    session = Session(server.base_url)
    session.login("admin", server.admin_password)
    return session


@pytest.fixture
def api(api_session):
    """The signed-in HTTP session; after the test the demo jobs are as they were."""
    yield api_session
    restore_demo_jobs(api_session)


@pytest.fixture
def new_context(browser):
    """Make browser contexts (options as ``browser.new_context``), closed after the test."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", VIEWPORT)
        options.setdefault("locale", "en-US")
        options.setdefault("timezone_id", "UTC")
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def signed_in(new_context):
    """Open the jobs page of a server in a new context, signed in through the form."""

    def make(server, *, wait_for_stream=True, **context_options):
        page = new_context(**context_options).new_page()
        sign_in(page, server, wait_for_stream=wait_for_stream)
        return page

    return make


@pytest.fixture
def page(signed_in, server):
    """The jobs page of this module's server, signed in, its live stream open."""
    return signed_in(server)
