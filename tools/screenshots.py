"""Take screenshots of the Jobs page: light and dark, wide and narrow, with a running
job, a paused job and an error.  Starts its own server on a free loopback port.

    .venv/bin/python tools/screenshots.py [OUTPUT_DIR]   (default docs/screenshots)

Needs Debian's chromium (/usr/bin/chromium) and the playwright package.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Flags for Chromium in a sandbox with no network but loopback (the browser tests use them too).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(instance, port):
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        PORT=str(port),
        JOBS_INSTANCE_PATH=str(instance),
        JOBS_DEMO="1",
        HOME=str(instance),
    )
    gunicorn = Path(sys.executable).parent / "gunicorn"
    process = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


def post(opener, base, path, token):
    request = urllib.request.Request(
        base + path,
        method="POST",
        data=b"",
        headers={"X-CSRFToken": token, "Accept": "application/json"},
    )
    try:
        opener.open(request).read()
    except urllib.error.HTTPError:
        pass


def wait_not_running(opener, base, name, timeout=20):
    """Wait until ``name`` is not running, so that the next Run Now starts a fresh run."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        f"{base}/api/jobs/{name}", headers={"Accept": "application/json"}
    )
    while time.monotonic() < deadline:
        if json.loads(opener.open(request).read())["status"] != "running":
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} kept running")


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    instance = Path(tempfile.mkdtemp(prefix="jobs-shots-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(instance, port)
    try:
        password = (instance / "initial-admin-password").read_text().strip()
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = opener.open(base + "/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        opener.open(
            base + "/login",
            data=urllib.parse.urlencode(
                {"username": "admin", "password": password, "csrf_token": token}
            ).encode(),
        ).read()
        page_html = opener.open(base + "/admin/jobs").read().decode()
        token = re.search(r'data-csrf-token="([^"]+)"', page_html).group(1)
        post(opener, base, "/api/jobs/demo_fail/run", token)
        post(opener, base, "/api/jobs/dhcp_active_leases/pause", token)
        post(opener, base, "/api/jobs/dns_zone_check/run", token)
        wait_not_running(opener, base, "demo_fail")  # its error is on the card
        cookies = [
            {"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": "/"} for c in jar
        ]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for scheme in ("light", "dark"):
                for name, width, height in (("wide", 1400, 1000), ("narrow", 360, 1400)):
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, color_scheme=scheme
                    )
                    context.add_cookies(cookies)
                    page = context.new_page()
                    page.goto(base + "/admin/jobs")
                    wait_not_running(opener, base, "demo_slow")
                    post(opener, base, "/api/jobs/demo_slow/run", token)
                    page.wait_for_selector("#job-demo_slow.status-running")
                    page.wait_for_timeout(1500)  # some progress to show
                    page.screenshot(path=str(out / f"jobs-{scheme}-{name}.png"), full_page=True)
                    context.close()
            browser.close()
        print(f"Screenshots in {out}")
    finally:
        server.terminate()
        server.wait(20)
        shutil.rmtree(instance, ignore_errors=True)


if __name__ == "__main__":
    main()
