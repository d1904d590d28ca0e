"""Users, roles and their server-side enforcement: option parsing, handlers, and a real server with login."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

import app
from activelearn import store
from activelearn.config import resolve_paths
from activelearn.errors import ActiveLearnError
from activelearn.ui import build_app, label_tab, launch_app
from activelearn.ui.auth import (User, collect_users, load_users_file, parse_auth_spec, password_checker,
                                 roles_of)
from activelearn.ui.context import LOCAL_USER, UIContext
from tests.helpers import free_port


def as_user(name: str) -> SimpleNamespace:
    """What a handler sees of a logged-in request: gr.Request exposes .username."""
    return SimpleNamespace(username=name)


@pytest.fixture
def home(tmp_path):
    return resolve_paths(tmp_path / "home", tmp_path / "no-fmnist")


def test_auth_spec_defaults_to_annotator_and_accepts_lead():
    assert parse_auth_spec("ann:secret") == User("ann", "secret", "annotator")
    assert parse_auth_spec("lee:pw:lead") == User("lee", "pw", "lead")


@pytest.mark.parametrize("spec, message", [
    ("nopassword", "expected user:password"),
    ("ann:", "non-empty password"),
    ("ann:pw:boss", "unknown role 'boss'"),
    ("a:b:c:d", "expected user:password"),
])
def test_bad_auth_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(ActiveLearnError, match=message):
        parse_auth_spec(spec)


def test_bad_auth_spec_does_not_echo_the_password():
    with pytest.raises(ActiveLearnError) as info:
        parse_auth_spec("ann:hunter2:x:y")
    assert "hunter2" not in str(info.value)


def test_users_csv_with_comments_blank_lines_and_default_role(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("# the team\nuser,password,role\nann,pw1,\n\nlee,pw2,lead\n  bob , pw3 ,annotator\n")
    users = load_users_file(path)
    assert users == [User("ann", "pw1", "annotator"), User("lee", "pw2", "lead"), User("bob", "pw3", "annotator")]


def test_users_csv_errors_name_the_file_and_line(tmp_path):
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("name,pass\nann,pw\n")
    with pytest.raises(ActiveLearnError, match="header must name user,password"):
        load_users_file(bad_header)
    bad_role = tmp_path / "b.csv"
    bad_role.write_text("user,password,role\nann,pw,annotator\nlee,pw,admin\n")
    with pytest.raises(ActiveLearnError, match=r"b.csv, line 3: unknown role 'admin'"):
        load_users_file(bad_role)
    with pytest.raises(ActiveLearnError, match="cannot read users file"):
        load_users_file(tmp_path / "missing.csv")


def test_collect_users_merges_sources_and_refuses_duplicates(tmp_path):
    path = tmp_path / "users.csv"
    path.write_text("user,password,role\nlee,pw,lead\n")
    users = collect_users(["ann:pw"], path)
    assert roles_of(users) == {"ann": "annotator", "lee": "lead"}
    with pytest.raises(ActiveLearnError, match="defined twice"):
        collect_users(["lee:other"], path)


def test_password_checker_accepts_only_the_right_pair():
    check = password_checker([User("ann", "pw", "annotator")])
    assert check("ann", "pw")
    assert not check("ann", "PW") and not check("bob", "pw") and not check("ann", "")


def test_app_options_are_repeatable_and_documented():
    args = app.build_parser().parse_args(["--auth", "a:1", "--auth", "b:2:lead", "--port", "8000",
                                          "--users", "team.csv"])
    assert args.auth == ["a:1", "b:2:lead"] and args.port == 8000 and args.users == "team.csv"
    assert args.host == "127.0.0.1"
    assert "user,password,role" in app.build_parser().format_help()


def test_app_main_refuses_bad_users_before_serving(capsys):
    assert app.main(["--auth", "ann:pw:boss"]) == 2
    assert "unknown role" in capsys.readouterr().err


def test_context_roles():
    open_app = UIContext(resolve_paths("/tmp/x", "/tmp/y"), {})
    assert open_app.user(None) == LOCAL_USER and open_app.role(None) == "lead"
    team = UIContext(resolve_paths("/tmp/x", "/tmp/y"), {"ann": "annotator", "lee": "lead"})
    assert team.role(as_user("ann")) == "annotator" and team.role(as_user("lee")) == "lead"
    assert team.require(as_user("ann"), "label") == "ann"
    with pytest.raises(gr.Error, match="ann \\(annotator\\) may not train"):
        team.require(as_user("ann"), "train")


def test_annotator_cannot_add_a_class_through_the_handler(home):
    ctx = UIContext(home, {"ann": "annotator", "lee": "lead"})
    with pytest.raises(gr.Error, match="may not add classes"):
        label_tab.add_class(ctx, None, "Hat", as_user("ann"))
    db = store.open_db(home.db)
    assert "Hat" not in store.class_names(db)
    added = label_tab.add_class(ctx, None, "Hat", as_user("lee"))
    assert "Hat" in added.classes and "Added class **Hat**" in added.message
    assert store.class_names(db)[-1] == "Hat"


@pytest.fixture
def served(home):
    """A real server with two users, logged in through Gradio's login form by the client."""
    from gradio_client import Client

    users = [User("ann", "pw-a", "annotator"), User("lee", "pw-l", "lead")]
    demo = build_app(home, roles_of(users))
    port = free_port()
    launch_app(demo, home, users, port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        yield lambda name, pw: Client(url, auth=(name, pw), verbose=False)
    finally:
        demo.close()


def test_roles_are_enforced_by_a_real_server_with_login(served, home):
    from gradio_client.exceptions import AppError

    client_for = served
    annotator = client_for("ann", "pw-a")
    header = annotator.predict(api_name="/header")
    assert "ann" in header and "(annotator)" in header
    with pytest.raises(AppError, match="may not add classes"):
        annotator.predict("Hat", api_name="/add_class")
    assert "Hat" not in store.class_names(store.open_db(home.db))

    lead = client_for("lee", "pw-l")
    assert "(lead)" in lead.predict(api_name="/header")
    lead.predict("Hat", api_name="/add_class")
    assert "Hat" in store.class_names(store.open_db(home.db))

    with pytest.raises(Exception):  # noqa: B017 - the client refuses to connect on a failed login
        client_for("ann", "wrong")
