"""Scale-out: two `app.py` servers on one PostgreSQL database, five annotators spread across both.

Each annotator is a gradio_client session on the Label tab's own endpoints. What is stored
decides the test: every decision a client got an answer for is in the database once, and no
item was put on two annotators' screens or decided by two of them (the leases hold across
servers, not only across one server's threads).
"""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest

from activelearn import registry, store
from activelearn.config import resolve_paths
from tests.helpers import add_items, free_port, start_app, stop, wait_served

pytestmark = pytest.mark.slow

ANNOTATORS = ("ann1", "ann2", "ann3", "ann4", "ann5")
DECISIONS = 25


def _annotate(url: str, name: str, shown: dict, acknowledged: dict, errors: list, start: threading.Barrier) -> None:
    from gradio_client import Client
    client = Client(url, auth=(name, f"pw-{name}"), verbose=False)
    view = client.predict(api_name="/label_load")
    start.wait()
    for step in range(DECISIONS):
        item = view[0]
        if item is None:
            errors.append(f"{name}: nothing on screen at step {step}")
            return
        shown[name].append(int(item))
        action, cls = ("skip", "") if step % 7 == 3 else ("correct", str(step % 10)) if step % 3 else ("confirm", "")
        try:
            view = client.predict(item, action, cls, api_name="/decide")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            return
        if "not recorded" not in " ".join(part for part in view if isinstance(part, str)):
            acknowledged[name].append(int(item))


def test_two_app_servers_on_one_postgres_database_lose_nothing_and_serve_no_item_twice(
        tmp_path, fmnist_dir, tiny_model, pg_url):
    paths = resolve_paths(tmp_path / "home", fmnist_dir, pg_url)
    model, card = tiny_model
    registry.register(paths.models, model, card, activate_now=True)
    add_items(paths, 400)
    auth = [arg for name in ANNOTATORS for arg in ("--auth", f"{name}:pw-{name}:annotator")]
    ports = [free_port(), free_port()]
    servers = [start_app(paths.home, fmnist_dir, port, args=["--db", pg_url, *auth]) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}/" for port in ports]
        for url, server in zip(urls, servers):
            wait_served(url, server, timeout_s=180)
        shown: dict[str, list[int]] = defaultdict(list)
        acknowledged: dict[str, list[int]] = defaultdict(list)
        errors: list[str] = []
        start = threading.Barrier(len(ANNOTATORS))
        threads = [threading.Thread(target=_annotate, args=(urls[k % 2], name, shown, acknowledged, errors, start))
                   for k, name in enumerate(ANNOTATORS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    finally:
        for server in servers:
            stop(server)
    assert not errors
    db = store.open_db(pg_url)
    events = db.execute("SELECT item_id, annotator FROM labels WHERE action != 'undo'").fetchall()
    stored = defaultdict(int)
    for item, who in events:
        stored[(item, who)] += 1
    acknowledged_pairs = [(item, name) for name, items in acknowledged.items() for item in items]
    assert len(acknowledged_pairs) == len(ANNOTATORS) * DECISIONS      # none refused: no one was shown a taken item
    assert [pair for pair in acknowledged_pairs if stored[pair] != 1] == []   # 0 lost, none stored twice
    assert len(events) == len(acknowledged_pairs)
    seen_by: dict[int, set[str]] = defaultdict(set)
    for name, items in shown.items():
        for item in items:
            seen_by[item].add(name)
    for item, who in events:
        seen_by[item].add(who)
    assert {item: who for item, who in seen_by.items() if len(who) > 1} == {}
    # both servers really served: annotators 1, 3, 5 on one, 2 and 4 on the other, all of them deciding
    assert all(len(acknowledged[name]) == DECISIONS for name in ANNOTATORS)
