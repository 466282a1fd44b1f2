"""Who may do what: pages redirect strangers to the sign-in form; the API answers
them with 401/403 JSON (an EventSource that is redirected gives up for good).
Authentication is decided before the CSRF check, so an anonymous post is 401
whether or not it carries a token."""

from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user

from routes.errors import api_error

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
DEFAULT_NEXT = "/admin/jobs"


def admin_page(view):
    """For pages: sign in first (keeping where to come back), then be an admin."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if not current_user.is_admin:
            abort(403)
        _check_csrf()
        return view(*args, **kwargs)

    return wrapper


def admin_api(view):
    """For the API and the stream: 401 or 403 as JSON, never a redirect."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return api_error("Sign in first.", 401)
        if not current_user.is_admin:
            return api_error("Only administrators may use the jobs API.", 403)
        _check_csrf()
        return view(*args, **kwargs)

    return wrapper


def _check_csrf():
    if request.method in STATE_CHANGING:
        check_csrf()


def check_csrf():
    """Flask-WTF's token check, after refusing a form it cannot read: a multipart part
    without a name becomes a ``None`` key, on which the check would fail with a 500."""
    if None in request.form:
        abort(400, "Every field of a form needs a name; this one has a field without.")
    current_app.extensions["csrf"].protect()


def safe_next(target):
    """``target`` if it is a path on this site, else the jobs page."""
    if not target or not isinstance(target, str):
        return DEFAULT_NEXT
    if any(ord(c) < 32 or c == "\\" for c in target):
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return DEFAULT_NEXT
    return target
