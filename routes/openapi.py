"""``GET /api/openapi.json``: the OpenAPI 3.1 document of the API, kept beside this
module as ``openapi.json`` and checked against the app by tests/test_openapi.py."""

import functools
import os

from flask import Blueprint, current_app

from routes.access import admin_api

bp = Blueprint("openapi", __name__)

DOCUMENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")


@functools.cache
def document_bytes():
    """The document as written on disk, read once per process."""
    with open(DOCUMENT, "rb") as handle:
        return handle.read()


@bp.get("/api/openapi.json")
@admin_api
def openapi():
    """The API's OpenAPI document; for administrators, like the rest of /api."""
    return current_app.response_class(document_bytes(), mimetype="application/json")
