"""The app's Flask extensions, created once and bound in ``create_app`` with ``init_app``."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
# Counts failed sign-ins only (see routes/auth.py).  Counters live in each worker's
# memory: with several workers an attacker gets at most that many times the limit.
limiter = Limiter(key_func=get_remote_address, storage_uri="memory://", headers_enabled=True)
