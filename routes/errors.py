"""Error answers: JSON ``{"error": ...}`` under /api/, an HTML page elsewhere."""

import logging

from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from scheduler import StoreError

log = logging.getLogger(__name__)


def api_error(message, status=400, **headers):
    """The one way the API reports an error."""
    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update(headers)
    return response


RETRY_AFTER_SECONDS = "5"


def store_failure_message(error):
    """What a client is told when the database failed it: for a post, that nothing
    changed; then the store's own words (the file, what is wrong, what to do)."""
    if request.method == "POST":
        return f"Nothing was changed: the change could not be saved. {error}"
    return str(error)


def _is_api():
    return request.path.startswith("/api/")


def register(app):
    """Install the handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def csrf_failed(error):
        message = (
            f"The form's security token is missing or invalid ({error.description}). "
            "Reload the page and try again."
        )
        if _is_api():
            return api_error(message, 400)
        return render_template("error.html", status=400, message=message), 400

    @app.errorhandler(StoreError)
    def store_failed(error):
        log.error("Database error: %s", error)
        message = store_failure_message(error)
        if _is_api():
            return api_error(message, 503, **{"Retry-After": RETRY_AFTER_SECONDS})
        return render_template("error.html", status=503, message=message), 503

    @app.errorhandler(HTTPException)
    def http_error(error):
        if _is_api():
            response = api_error(error.description or error.name, error.code)
            if error.code == 405 and getattr(error, "valid_methods", None):
                response.headers["Allow"] = ", ".join(error.valid_methods)
            return response
        return error

    @app.errorhandler(403)
    def forbidden(error):
        if _is_api():
            return api_error("Only administrators may use the jobs API.", 403)
        message = "Only administrators may open this page."
        return render_template("error.html", status=403, message=message), 403

    @app.errorhandler(429)
    def too_many(error):
        message = "Too many failed sign-ins. Wait a minute, then try again."
        if _is_api():
            return api_error(message, 429)
        return render_template("login.html", next="/admin/jobs", error=message), 429

    @app.errorhandler(404)
    def not_found(error):
        if _is_api():
            return api_error(error.description or "Not found.", 404)
        return render_template("error.html", status=404, message="No such page."), 404
