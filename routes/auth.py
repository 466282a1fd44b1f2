"""Sign in and out."""

from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from extensions import limiter
from routes.access import DEFAULT_NEXT, check_csrf, safe_next
from scheduler.native import call_off_hub

bp = Blueprint("auth", __name__)

FAILED = "Wrong username or password."


def register_user_loader(login_manager):
    """Users come back from their server-side session id."""
    login_manager.login_view = "auth.login"

    @login_manager.user_loader
    def load_user(sid):
        # A read: in WAL mode it never waits for a writer, so it may run on the hub.
        return current_app.extensions["accounts"].user_for_session(sid)


@bp.get("/")
def index():
    """The jobs page is the home page."""
    return redirect(DEFAULT_NEXT)


def _failed(response):
    return response.status_code == 401


def _username():
    return "user:" + request.form.get("username", "").strip().lower()


def _per_user():
    return f"{current_app.config['LOGIN_FAILURES_PER_USER']} per minute"


def _per_address():
    return f"{current_app.config['LOGIN_FAILURES_PER_ADDRESS']} per minute"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_per_user, key_func=_username, methods=["POST"], deduct_when=_failed)
@limiter.limit(_per_address, methods=["POST"], deduct_when=_failed)
def login():
    """The sign-in form; on success go to a same-site ``next`` or the jobs page."""
    target = safe_next(request.values.get("next"))
    if request.method != "POST":  # GET, and HEAD, which must not try a password
        if current_user.is_authenticated:
            return redirect(target)
        return render_template("login.html", next=target, error=None)
    check_csrf()
    accounts = current_app.extensions["accounts"]
    username = request.form.get("username", "").strip()
    # Hashing takes tens of milliseconds: off the hub, so open streams keep flowing.
    user = call_off_hub(accounts.authenticate, username, request.form.get("password", ""))
    if user is None:
        return render_template("login.html", next=target, error=FAILED, username=username), 401
    hours = current_app.config["SESSION_HOURS"]
    session.clear()  # nothing from before sign-in carries over
    call_off_hub(accounts.start_session, user, hours * 3600)
    login_user(user)
    session.permanent = True
    return redirect(target)


@bp.post("/logout")
@login_required
def logout():
    """End this session everywhere it is used, then show the sign-in form."""
    check_csrf()
    # A write, which waits while another program holds the database's write lock:
    # off the hub, like the writes of signing in, so nothing else waits with it.
    call_off_hub(current_app.extensions["accounts"].end_session, current_user.sid)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
