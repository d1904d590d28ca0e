"""Helpers shared by test modules (imported as `tests.helpers`; fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from activelearn import store
from activelearn.ui.auth import User

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LEAD = User("lee", "pw-lead", "lead")
ANNOTATOR = User("ann", "pw-ann", "annotator")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a test server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_items(paths, n: int, start: int = 0, split: str = "pool") -> list[int]:
    """n items with random 28x28 pixels (sha256 'sha<k>'); returns their ids."""
    db = store.open_db(paths.db)
    rng = np.random.default_rng(start)
    with store.transaction(db):
        return [store.insert_item(db, sha256=f"{start + i:08x}" + "0" * 56, source="upload",
                                  original_name=f"{i}.png", split=split,
                                  pixels=rng.integers(0, 255, (28, 28), dtype=np.uint8))
                for i in range(n)]


def legacy_class(db, name: str) -> int:
    """Insert a class the way an older activelearn could (no name validation): hostile names in old stores."""
    next_id = db.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM classes").fetchone()[0]
    db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (?, ?, NULL, ?)",
               [next_id, name, store.now()])
    return next_id


# ---------------------------------------------------------------- a served app

def start_app(home: Path, fmnist_dir: Path, port: int, env: dict[str, str] | None = None,
              args: Sequence[str] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--home", str(home), "--fmnist-dir", str(fmnist_dir),
         "--port", str(port), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"})


def wait_served(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited: {proc.stdout.read()}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not served within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def poll(predicate, timeout_s: float, what: str):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout_s} s")



@contextmanager
def serving(paths, users) -> Iterator[str]:
    """build_app on a free port with these logins, in this process; yields its URL. On the way out the
    server closes and any job it started is cancelled (a test must not leave a worker training)."""
    from activelearn import jobs
    from activelearn.ui import build_app, launch_app
    from activelearn.ui.auth import roles_of

    demo = build_app(paths, roles_of(users))
    port = free_port()
    launch_app(demo, paths, list(users), port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        db = store.open_db(paths.db)
        for job in jobs.list_jobs(db):
            if job.active:
                jobs.cancel(db, job.id)
                jobs.wait(db, job.id, timeout_s=120)

# ---------------------------------------------------------------- headless Chromium

@contextmanager
def chromium():
    """Headless Chromium with the flags the team guide asks for."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        try:
            yield browser
        finally:
            browser.close()


def logged_in(browser, url: str, user: User):
    """A new page logged in as `user`, once the Label tab shows its first item."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.outside_requests = []
    page.on("request", lambda r: r.url.startswith(url) or r.url.startswith(("data:", "blob:"))
            or page.outside_requests.append(r.url))
    page.goto(url)
    page.fill("input[type=text]", user.name)
    page.fill("input[type=password]", user.password)
    page.keyboard.press("Enter")
    # the hidden id box shows "0" before the first item arrives: wait for the item's reasons
    page.wait_for_function("() => document.querySelector('#al-why')?.innerText.includes('Why this item')",
                           timeout=60_000)
    return page


# ---------------------------------------------------------------- simulated annotators

#: Fashion-MNIST classes that look alike: T-shirt/Pullover/Coat/Shirt, Sandal/Sneaker/Ankle boot, Trouser/Dress.
CONFUSABLE = [[0, 2, 4, 6], [5, 7, 9], [1, 3], [8]]
GROUP_OF = {c: group for group in CONFUSABLE for c in group}
#: Simulated annotators and how often each is right.
ACCURACY = {"ann95": 0.95, "ann85": 0.85, "ann60": 0.60}


def mistake(truth: int, rng: np.random.Generator) -> int:
    """A wrong class: a look-alike 70% of the time, any other class otherwise."""
    near = [c for c in GROUP_OF[truth] if c != truth]
    if near and rng.random() < 0.7:
        return int(rng.choice(near))
    return int(rng.choice([c for c in range(10) if c != truth]))


# ---------------------------------------------------------------- PostgreSQL

PG_ENV = "ACTIVELEARN_TEST_PG"


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL server program on PATH or in Debian's /usr/lib/postgresql/<major>/bin."""
    import shutil
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """A throw-away PostgreSQL cluster in a temporary folder on a free loopback port; yields its URL.

    Yields None when no server programs are installed. $ACTIVELEARN_TEST_PG, when set, names a
    server to use instead. Durability is switched off (fsync, synchronous commit): the cluster
    lives as long as the test session. As root the server runs as Debian's `postgres` user
    (initdb refuses root), in a folder of its own directly under the temporary directory.
    """
    import shutil
    import tempfile
    if os.environ.get(PG_ENV):
        yield os.environ[PG_ENV]
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="activelearn-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off -c max_connections=300")
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "server.log"), "-w",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def pg_schema_url(server_url: str, schema: str) -> str:
    """The server's URL with a fresh schema of its own first on the search path: one database per test."""
    import psycopg
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options=-csearch_path%3D{schema}"
