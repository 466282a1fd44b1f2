"""When the session ends, the page says so and offers the sign-in, instead of spinning."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.browser_support import open_jobs_page, sign_in
from tests.server_support import REPO

pytestmark = pytest.mark.browser

FLASK = Path(sys.executable).parent / "flask"
# A session ends on the server; the page learns it from its stream (which checks every
# heartbeat) or, in a tab without the stream, from its next read.
NOTICED = 12_000


def _expect_signed_out(page, server):
    notice = page.locator("#signed-out")
    expect(notice).to_be_visible(timeout=NOTICED)
    expect(notice).to_contain_text("Your session has ended")
    link = notice.get_by_role("link", name="Sign in again")
    expect(link).to_have_attribute("href", "/login?next=/admin/jobs")
    # Nothing pretends to be still trying or still working.
    expect(page.locator("#connection-state")).to_be_hidden()
    expect(page.get_by_role("button", name="Pause demo_tick")).to_be_disabled()
    link.click()
    page.wait_for_url(f"{server.base_url}/login?next=/admin/jobs")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_signing_out_in_another_tab_shows_signed_out(new_context, server):
    context = new_context()
    watching = context.new_page()
    sign_in(watching, server)
    other = open_jobs_page(context, server)
    expect(watching.locator("#signed-out")).to_be_hidden()

    other.get_by_role("button", name="Sign out").click()
    other.wait_for_url(f"{server.base_url}/login")

    _expect_signed_out(watching, server)


def test_signing_out_the_tab_that_holds_the_stream_tells_the_others(new_context, server):
    context = new_context()
    holder = context.new_page()
    sign_in(holder, server)  # the first tab takes the shared stream
    watching = open_jobs_page(context, server)

    holder.get_by_role("button", name="Sign out").click()
    holder.wait_for_url(f"{server.base_url}/login")

    _expect_signed_out(watching, server)


def test_a_session_ended_on_the_server_shows_signed_out(signed_in, server):
    page = signed_in(server)
    expect(page.locator("#signed-out")).to_be_hidden()

    # A new password ends every session of the user, as an administrator would do it.
    new_password = "a brand new password 42"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update(JOBS_INSTANCE_PATH=str(server.instance), HOME=str(server.home))
    subprocess.run(
        [str(FLASK), "--app", "wsgi", "users", "passwd", "admin", "--password", new_password],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    server.admin_password = new_password

    _expect_signed_out(page, server)
