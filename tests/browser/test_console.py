"""Loading a page leaves nothing in the browser's console: no script error and no
failed request, the site's icon included."""

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.browser.browser_support import is_stream, path_of

pytestmark = pytest.mark.browser


def _watch(page):
    """What the console would show as an error: messages, script errors, failed loads."""
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda error: problems.append(f"script: {error}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
    return problems


def _open(page, url):
    """Open ``url``; the icon the browser fetched for it, or None if it fetched none."""
    try:
        with page.expect_response(lambda r: "favicon" in path_of(r.url)) as icon:
            page.goto(url)
    except PlaywrightTimeoutError:
        return None
    return icon.value


def test_the_sign_in_page_loads_without_a_console_error(new_context, server):
    page = new_context().new_page()
    problems = _watch(page)

    icon = _open(page, f"{server.base_url}/login")

    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert problems == []
    assert icon and icon.ok, "the browser fetched no icon for the page"
    assert icon.header_value("content-type").startswith("image/svg+xml")


def test_the_jobs_page_loads_without_a_console_error(new_context, server, api_session):
    # Signed in already (the API session's cookie): the jobs page is the first page
    # this context loads.  Chromium does not ask again for an icon that failed before,
    # in any context, so the icon itself is checked as well as the console.
    context = new_context()
    context.add_cookies(
        [{"name": c.name, "value": c.value, "url": server.base_url} for c in api_session.jar]
    )
    page = context.new_page()
    problems = _watch(page)

    with page.expect_response(lambda r: is_stream(r) and r.status == 200):
        icon = _open(page, f"{server.base_url}/admin/jobs")

    expect(page.locator(".card")).not_to_have_count(0)
    assert problems == []
    assert icon and icon.ok, "the browser fetched no icon for the page"
    assert icon.header_value("content-type").startswith("image/svg+xml")
