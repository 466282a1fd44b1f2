"""The application factory: ``create_app()`` builds the CodexDNS jobs app."""

import logging
import os
import secrets

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface

import settings
from accounts import Accounts
from extensions import csrf, limiter, login_manager
from jobs import build_registry
from scheduler import Engine, Store

log = logging.getLogger(__name__)

DATABASE_FILE = "jobs.db"
SECRET_KEY_FILE = "secret-key"
MAX_REQUEST_BYTES = 64 * 1024


class SessionInterface(SecureCookieSessionInterface):
    """Session cookies are Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def create_app(test_config=None):
    """Build the app from the environment (or ``test_config``); start nothing."""
    config = settings.load() if test_config is None else {**settings.load({}), **test_config}
    instance_path = os.path.abspath(config["JOBS_INSTANCE_PATH"])
    # The folder holds password hashes, the secret key and the initial password.
    os.makedirs(instance_path, mode=0o700, exist_ok=True)
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    app.config.update(config)
    app.config.update(
        SECRET_KEY=config.get("SECRET_KEY") or _secret_key(instance_path),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="codexdns_session",
        PERMANENT_SESSION_LIFETIME=int(config["SESSION_HOURS"] * 3600),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        # The token is tied to the session, not to the clock: a page left open all
        # day can still post.  Checks run in the views, after authentication.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_CHECK_DEFAULT=False,
    )
    app.json.sort_keys = False  # keep the documented field order
    app.session_interface = SessionInterface()

    database = os.path.join(instance_path, DATABASE_FILE)
    # Controls and sign-ins wait this long for another process's write to finish.
    busy_timeout = app.config["DB_BUSY_TIMEOUT_SECONDS"]
    accounts = Accounts(database, busy_timeout=busy_timeout)
    accounts.migrate()
    store = Store(database, busy_timeout=busy_timeout)
    store.migrate()
    job_settings = {
        "JOBS_DEMO": app.config["JOBS_DEMO"],
        "JOBS_INSTANCE_PATH": instance_path,
        "JOBS_HISTORY_DAYS": app.config["JOBS_HISTORY_DAYS"],
    }
    for key in ("JOBS_ZONES_DIR", "JOBS_LEASES_FILE", "JOBS_DNS_PROBE_NAMES"):
        if app.config.get(key):
            job_settings[key] = app.config[key]
    engine = Engine(
        app.config.get("JOBS_REGISTRY") or build_registry(job_settings),
        store,
        settings=job_settings,
        run_jobs=app.config["JOBS_SCHEDULER"],
        lease_ttl=app.config["JOBS_LEASE_SECONDS"],
        clock=app.config.get("JOBS_CLOCK"),
    )
    app.extensions["jobs"] = engine
    app.extensions["accounts"] = accounts

    csrf.init_app(app)
    login_manager.init_app(app)
    limiter.init_app(app)

    from routes import api, auth, errors, openapi, pages, stream

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(stream.bp)
    errors.register(app)
    auth.register_user_loader(login_manager)

    from cli import users_cli

    app.cli.add_command(users_cli)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app


def prepare(app):
    """First-start work done once per instance: the initial admin account, whose
    password is printed here and written to the instance folder."""
    password = app.extensions["accounts"].ensure_initial_admin(app.instance_path)
    if password:
        path = os.path.join(app.instance_path, "initial-admin-password")
        print(
            "\n  Created the first account.  Sign in at /login as\n"
            f"      user:     admin\n      password: {password}\n"
            f"  (also saved, readable only by you, in {path})\n",
            flush=True,
        )
    return password


def _secret_key(instance_path):
    """The instance's own secret key, generated once and kept 0600."""
    path = os.path.join(instance_path, SECRET_KEY_FILE)
    try:
        with open(path) as handle:
            key = handle.read().strip()
    except FileNotFoundError:
        key = None
    if key is not None:
        if len(key) < 32:
            raise SystemExit(
                f"The secret key in {path} is empty or too short; delete the file to have "
                "a new one generated (everyone will have to sign in again)."
            )
        return key
    key = secrets.token_hex(32)
    # Write it whole under a temporary name, then link it into place: a second
    # worker starting at the same moment either wins or reads the winner's key.
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    try:
        os.link(temporary, path)
    except FileExistsError:
        with open(path) as handle:
            key = handle.read().strip()
    finally:
        os.unlink(temporary)
    return key
