"""Users, roles and their server-side enforcement: option parsing, handlers, and a real server with login."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
from fastapi import HTTPException
from PIL import Image

import app
from activelearn import store
from activelearn.config import resolve_paths
from activelearn.errors import ActiveLearnError
from activelearn.ui import build_app, label_tab, launch_app
from activelearn.ui.auth import (CLIENT_ADDRESS, LoginThrottle, User, collect_users, load_users_file,
                                 parse_auth_spec, password_checker, roles_of)
from activelearn.ui.context import LOCAL_USER, UIContext
from activelearn.ui.security import launch_options
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


def run(coroutine):
    return asyncio.run(coroutine)


def test_password_checker_accepts_only_the_right_pair():
    check = password_checker([User("ann", "pw", "annotator")], LoginThrottle(sleep=no_wait))
    assert inspect.iscoroutinefunction(check)  # Gradio awaits only coroutine functions; a coroutine is truthy
    assert run(check("ann", "pw"))
    assert not run(check("ann", "PW")) and not run(check("bob", "pw")) and not run(check("ann", ""))


async def no_wait(seconds: float) -> None:
    WAITS.append(seconds)


WAITS: list[float] = []


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def attempt(check, name: str, password: str, address: str | None = "10.1.1.1"):
    """One login as Gradio makes it, from `address` (what security.RequestGuard records)."""
    token = CLIENT_ADDRESS.set(address)
    try:
        return run(check(name, password))
    except HTTPException as exc:
        return exc
    finally:
        CLIENT_ADDRESS.reset(token)


def test_failed_logins_back_off_then_lock_the_user_even_for_the_right_password(caplog):
    clock = FakeClock()
    WAITS.clear()
    throttle = LoginThrottle(max_failures=5, lockout_s=300, base_delay_s=0.5, max_delay_s=4, clock=clock,
                             sleep=no_wait)
    check = password_checker([User("ann", "secret-pw", "annotator")], throttle)
    with caplog.at_level("WARNING", logger="activelearn.auth"):
        answers = [attempt(check, "ann", f"guess{k}") for k in range(5)]
    assert answers == [False] * 5
    assert WAITS == [0.0, 0.5, 1.0, 2.0, 4.0]           # each failure waits longer before it is answered
    assert sum("failed login: user 'ann' from 10.1.1.1" in r.getMessage() for r in caplog.records) == 5
    assert "locked for 300 s" in caplog.records[-1].getMessage()
    assert not any("guess" in r.getMessage() or "secret" in r.getMessage() for r in caplog.records)

    refused = attempt(check, "ann", "secret-pw")          # the right password, during the lockout
    assert isinstance(refused, HTTPException) and refused.status_code == 429
    assert refused.detail == "Too many failed logins: try again in 5 minute(s)."
    assert isinstance(attempt(check, "ann", "secret-pw", "10.9.9.9"), HTTPException)  # the user, from anywhere
    clock.now += 301
    assert attempt(check, "ann", "secret-pw") is True


def test_an_address_trying_many_users_is_locked_and_made_up_names_share_one_key():
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=5, clock=clock, sleep=no_wait)
    users = [User(f"user{k}", "pw") for k in range(6)] + [User("lee", "pw", "lead")]
    check = password_checker(users, throttle)
    for k in range(5):
        assert attempt(check, f"user{k}", "wrong", "10.6.6.6") is False
    assert isinstance(attempt(check, "lee", "pw", "10.6.6.6"), HTTPException)   # that address is locked
    assert attempt(check, "lee", "pw", "10.7.7.7") is True                      # lee elsewhere is not
    for k in range(5):
        attempt(check, f"nobody{k}", "x", f"10.8.8.{k}")                        # 5 made-up names, 5 addresses
    assert isinstance(attempt(check, "nobody99", "x", "10.8.9.9"), HTTPException)  # one key for all of them
    assert attempt(check, "user5", "pw", "10.8.9.9") is True                       # real users unaffected


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


# ---------------------------------------------------------------- a real server with launch_options

USERS = [User("ann", "pw-a", "annotator"), User("lee", "pw-l", "lead")]


@pytest.fixture
def secured(home):
    """The app served with security.launch_options: short lockout, small upload cap, fast cache sweep."""
    demo = build_app(home, roles_of(USERS))
    port = free_port()
    options = launch_options(demo, home, USERS, max_upload_bytes=200_000, delete_cache=(1, 2),
                             throttle=LoginThrottle(max_failures=5, lockout_s=4, base_delay_s=0.25, max_delay_s=1))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
                **options)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()


def logged_in(url: str, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    response = client.post("/login", data={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return client


def test_a_real_server_throttles_200_wrong_passwords_and_locks_out(secured):
    answered, statuses = 0, []
    start = time.monotonic()
    with httpx.Client(base_url=secured, timeout=30) as client:
        for k in range(200):
            if time.monotonic() - start > 4:
                break
            statuses.append(client.post("/login", data={"username": "lee", "password": f"guess{k}"}).status_code)
            answered += 1
        assert answered < 20, f"{answered} of 200 wrong passwords answered in 4 s"   # 200 in 0.55 s before
        assert statuses[:5] == [400] * 5 and set(statuses[5:]) == {429}
        assert client.post("/login", data={"username": "lee", "password": "pw-l"}).status_code == 429
    time.sleep(4.5)   # the test throttle locks for 4 s
    assert logged_in(secured, "lee", "pw-l").get("/gradio_api/info").status_code == 200


def test_exports_are_not_reachable_through_the_file_route(secured, home):
    exports = home.data / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    secret = exports / "activelearn-csv-20250101-000000.csv"
    secret.write_text("item,label\n1,Shirt\n")
    for name, password in (("ann", "pw-a"), ("lee", "pw-l")):
        client = logged_in(secured, name, password)
        for route in (f"/gradio_api/file={secret}", f"/gradio_api/file={home.data}/images/../exports/{secret.name}",
                      f"/gradio_api/file={home.db}"):
            response = client.get(route)
            assert response.status_code in (403, 404), (name, route, response.status_code)
            assert b"Shirt" not in response.content


def test_only_leads_upload_and_uploads_are_capped_and_cleaned(secured, home, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    annotator, lead = logged_in(secured, "ann", "pw-a"), logged_in(secured, "lee", "pw-l")
    small = {"files": ("a.jpg", b"\xff\xd8" + b"x" * 1000, "image/jpeg")}
    refused = annotator.post("/gradio_api/upload", files=small)
    assert refused.status_code == 403 and refused.text == "only a lead may upload files"
    too_big = lead.post("/gradio_api/upload", files={"files": ("big.jpg", b"x" * 300_000, "image/jpeg")})
    assert too_big.status_code == 413
    accepted = lead.post("/gradio_api/upload", files=small)
    assert accepted.status_code == 200
    stored = Path(accepted.json()[0])
    assert stored.exists()

    # the Import handler itself refuses annotators, whatever the page shows
    incoming = home.data / "incoming"
    incoming.mkdir(parents=True)
    Image.new("RGB", (120, 160), (30, 60, 90)).save(incoming / "p.jpg", quality=90)
    with pytest.raises(AppError, match=r"ann \(annotator\) may not import photos"):
        Client(secured + "/", auth=("ann", "pw-a"), verbose=False).predict(
            None, str(incoming), False, 0.0, False, api_name="/import_files")
    assert store.open_db(home.db).execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    photo = tmp_path / "upload.jpg"
    Image.new("RGB", (120, 160), (200, 40, 40)).save(photo, quality=90)
    summary, *_ = Client(secured + "/", auth=("lee", "pw-l"), verbose=False).predict(
        [handle_file(str(photo))], "", False, 0.0, False, api_name="/import_files")
    assert summary.startswith("**Added 1**")
    assert store.open_db(home.db).execute("SELECT original_name FROM items").fetchall() == [("upload.jpg",)]

    deadline = time.monotonic() + 10   # delete_cache=(1, 2): swept every second once 2 s old
    while stored.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not stored.exists()
