"""Settings from the environment, the secret key, and the first administrator."""

import os
import runpy
import stat

import pytest

import settings
from app import create_app, prepare
from settings import SettingError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def instance(tmp_path):
    return tmp_path / "instance"


@pytest.fixture
def make_app(instance):
    """Build apps on one instance folder, as successive starts of a server would,
    and close their database connections afterwards."""
    apps = []

    def make(**config):
        app = create_app({"TESTING": True, "JOBS_INSTANCE_PATH": str(instance), **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- reading the environment ------------------------------------------------------------


def test_it_has_a_default_for_every_setting():
    config = settings.load({})
    assert config["HOST"] == "127.0.0.1"
    assert config["PORT"] == 8000
    assert config["JOBS_INSTANCE_PATH"] == os.path.abspath("instance")
    assert config["JOBS_DEMO"] is False
    assert config["JOBS_SCHEDULER"] is True
    assert config["JOBS_LEASE_SECONDS"] == 30.0
    assert config["SECRET_KEY"] is None
    assert config["SSE_HEARTBEAT_SECONDS"] == 15.0
    assert 300 <= config["SSE_MAX_AGE_SECONDS"] <= 1800  # streams live 5 to 30 minutes


def test_it_reads_the_documented_variables(tmp_path):
    config = settings.load(
        {
            "HOST": "0.0.0.0",
            "PORT": " 8080 ",
            "JOBS_INSTANCE_PATH": str(tmp_path / "data"),
            "JOBS_DEMO": "yes",
            "JOBS_SCHEDULER": "0",
            "JOBS_LEASE_SECONDS": "2.5",
            "SECRET_KEY": "from the environment",
        }
    )
    assert config["HOST"] == "0.0.0.0"
    assert config["PORT"] == 8080
    assert config["JOBS_INSTANCE_PATH"] == str(tmp_path / "data")
    assert config["JOBS_DEMO"] is True
    assert config["JOBS_SCHEDULER"] is False
    assert config["JOBS_LEASE_SECONDS"] == 2.5
    assert config["SECRET_KEY"] == "from the environment"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("On", True), ("0", False), ("no", False), ("off", False)],
)
def test_a_yes_no_setting_takes_the_usual_words(raw, expected):
    assert settings.load({"JOBS_DEMO": raw})["JOBS_DEMO"] is expected


def test_an_empty_value_means_the_default():
    config = settings.load({"HOST": "", "PORT": "  ", "JOBS_LEASE_SECONDS": ""})
    assert config["HOST"] == "127.0.0.1"
    assert config["PORT"] == 8000
    assert config["JOBS_LEASE_SECONDS"] == 30.0


@pytest.mark.parametrize(
    ("name", "raw", "advice"),
    [
        ("JOBS_DEMO", "maybe", "use 1 or 0"),
        ("JOBS_SCHEDULER", "enabled", "use 1 or 0"),
        ("PORT", "0", "from 1 to 65535"),
        ("PORT", "70000", "from 1 to 65535"),
        ("PORT", "abc", "whole number"),
        ("PORT", "80.5", "whole number"),
        ("JOBS_LEASE_SECONDS", "-1", "at least 0.5"),
        ("JOBS_LEASE_SECONDS", "soon", "use a number"),
        ("JOBS_LEASE_SECONDS", "nan", "at least 0.5"),
        ("JOBS_LEASE_SECONDS", "inf", "at least 0.5"),
        ("JOBS_SSE_HEARTBEAT", "0", "at least"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_saying_what_to_use(name, raw, advice):
    with pytest.raises(SettingError) as error:
        settings.load({name: raw})
    message = str(error.value)
    assert f"{name}={raw!r}" in message
    assert advice in message


def test_a_bad_value_stops_the_app_from_starting(monkeypatch, tmp_path):
    monkeypatch.setenv("JOBS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SettingError, match="PORT"):
        create_app()


def test_the_readme_lists_every_setting_the_app_reads():
    class Recording(dict):
        names = []

        def get(self, name, default=None):
            self.names.append(name)
            return default

    environ = Recording()
    settings.load(environ)
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()

    assert environ.names
    for name in environ.names:
        assert f"| `{name}` |" in readme, f"{name} is not in the README's table"


def gunicorn_config(monkeypatch, **environ):
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(os.path.join(REPO, "gunicorn.conf.py"))


def test_gunicorn_listens_where_the_settings_say(monkeypatch):
    config = gunicorn_config(monkeypatch, HOST="0.0.0.0", PORT="8123", JOBS_WORKERS="3")

    assert config["bind"] == "0.0.0.0:8123"
    assert config["workers"] == 3


@pytest.mark.parametrize("raw", ["abc", "0"])
def test_a_bad_worker_count_is_refused_with_a_message_saying_what_to_use(monkeypatch, raw):
    with pytest.raises(SettingError, match=f"JOBS_WORKERS={raw!r}; use a"):
        gunicorn_config(monkeypatch, JOBS_WORKERS=raw)


# -- the secret key -------------------------------------------------------------------


def test_the_secret_key_is_generated_once_and_kept_private(make_app, instance):
    first = make_app()
    key_file = instance / "secret-key"
    assert key_file.exists()
    assert mode(key_file) == 0o600
    assert len(first.secret_key) >= 32
    assert key_file.read_text().strip() == first.secret_key

    second = make_app()
    assert second.secret_key == first.secret_key


def test_two_instances_get_different_secret_keys(tmp_path):
    keys = []
    for name in ("one", "two"):
        app = create_app({"TESTING": True, "JOBS_INSTANCE_PATH": str(tmp_path / name)})
        keys.append(app.secret_key)
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()
    assert keys[0] != keys[1]


def test_a_secret_key_from_the_environment_wins(monkeypatch, instance):
    monkeypatch.setenv("JOBS_INSTANCE_PATH", str(instance))
    monkeypatch.setenv("SECRET_KEY", "a key the operator chose")
    app = create_app()
    try:
        assert app.secret_key == "a key the operator chose"
        assert not (instance / "secret-key").exists()
    finally:
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()


def test_a_session_signed_with_one_instance_key_is_kept_across_restarts(make_app):
    """The key lives in the instance folder, so a restart does not sign everyone out."""
    first = make_app()
    first.extensions["accounts"].create_user("admin", "correct horse battery", admin=True)
    client = first.test_client()
    token = _login_token(client)
    client.post(
        "/login",
        data={"username": "admin", "password": "correct horse battery", "csrf_token": token},
    )
    cookie = client.get_cookie("codexdns_session").value

    restarted = make_app().test_client()
    restarted.set_cookie("codexdns_session", cookie)
    assert restarted.get("/api/jobs").status_code == 200


def _login_token(client):
    import re

    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


# -- the first administrator -----------------------------------------------------------


def test_the_first_start_creates_an_admin_and_prints_its_password_once(make_app, instance, capsys):
    app = make_app()
    password = prepare(app)

    printed = capsys.readouterr().out
    assert password
    assert password in printed
    assert "admin" in printed
    password_file = instance / "initial-admin-password"
    assert password_file.read_text().strip() == password
    assert mode(password_file) == 0o600
    user = app.extensions["accounts"].authenticate("admin", password)
    assert user is not None
    assert user.is_admin


def test_later_starts_print_nothing_about_the_admin(make_app, capsys):
    prepare(make_app())
    capsys.readouterr()

    assert prepare(make_app()) is None
    assert capsys.readouterr().out == ""


def test_no_initial_admin_is_made_when_users_already_exist(make_app, instance, capsys):
    app = make_app()
    app.extensions["accounts"].create_user("ops", "a long enough password", admin=True)

    assert prepare(app) is None
    assert capsys.readouterr().out == ""
    assert not (instance / "initial-admin-password").exists()
    assert [name for name, _admin, _created in app.extensions["accounts"].users()] == ["ops"]


def test_the_initial_password_is_random(tmp_path, capsys):
    passwords = []
    for name in ("one", "two"):
        app = create_app({"TESTING": True, "JOBS_INSTANCE_PATH": str(tmp_path / name)})
        passwords.append(prepare(app))
        app.extensions["accounts"].close()
        app.extensions["jobs"].store.close()
    capsys.readouterr()
    assert passwords[0] != passwords[1]
    assert all(len(password) >= 12 for password in passwords)


def test_an_empty_secret_key_file_stops_the_server_with_what_to_do(make_app, instance):
    instance.mkdir(mode=0o700)
    (instance / "secret-key").write_text("\n")
    with pytest.raises(SystemExit, match="delete the file"):
        make_app()


def test_the_instance_folder_is_private_to_its_owner(make_app, instance):
    make_app()
    assert mode(instance) == 0o700
