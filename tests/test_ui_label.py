"""The Label tab's handlers on a real labels.db, real imported photos and the tiny real model."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from activelearn import ingest, jobs, labeling, store
from activelearn.config import resolve_paths
from activelearn.ui import label_tab
from activelearn.ui.context import UIContext

ROLES = {"ann": "annotator", "bob": "annotator", "lee": "lead"}


def as_user(name: str) -> SimpleNamespace:
    return SimpleNamespace(username=name)


@pytest.fixture
def ctx(seeded_home, photo_folder) -> UIContext:
    """60 imported, unlabeled photos (no holdout) and the tiny model v1 active."""
    report = ingest.import_paths(photo_folder, paths=seeded_home, holdout_fraction=0.0)
    assert report.added == 60
    return UIContext(seeded_home, ROLES)


def events(ctx: UIContext, annotator: str = "ann") -> list[tuple]:
    return store.open_db(ctx.paths.db).execute(
        "SELECT item_id, action, class_id, annotator, model_version, predicted_class_id FROM labels "
        "WHERE annotator = ? ORDER BY id", [annotator]).fetchall()


def test_first_view_shows_original_conversion_top3_and_reason(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    entry = panel.session.current
    assert panel.item_id == entry.item_id
    item = store.get_item(store.open_db(ctx.paths.db), entry.item_id)
    assert panel.original == str(ctx.paths.home / item["stored_path"]) and os.path.exists(panel.original)
    assert panel.preview.shape == (224, 224) and panel.preview.dtype == np.uint8
    assert np.array_equal(panel.preview[::8, ::8], np.frombuffer(item["pixels"], np.uint8).reshape(28, 28))
    assert list(panel.top3) == [name for name, _ in entry.top3] and len(panel.top3) == 3
    assert "Why this item:" in panel.why and f"#{entry.item_id}" in panel.why and "model v1" in panel.why
    assert panel.confirm_label.startswith(f"✓ {entry.top3[0][0]}")
    assert len(panel.session.queue) >= label_tab.REFILL_BELOW - 1, "the next items are prefetched"
    assert "0 labeled" in panel.counters and "unlabeled in pool:** 60" in panel.counters


def test_confirm_correct_skip_reject_record_the_user_and_advance(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    first = session.current
    panel = label_tab.decide_item(ctx, session, panel.item_id, "confirm", None, as_user("ann"))
    second = session.current
    assert second.item_id != first.item_id and panel.item_id == second.item_id
    wrong = (second.predicted_class_id + 1) % 10
    panel = label_tab.decide_item(ctx, session, panel.item_id, "confirm", wrong, as_user("ann"))  # a digit key
    third = session.current
    panel = label_tab.decide_item(ctx, session, panel.item_id, "skip", None, as_user("ann"))
    fourth = session.current
    panel = label_tab.decide_item(ctx, session, panel.item_id, "reject", None, as_user("ann"))
    assert events(ctx) == [
        (first.item_id, "confirm", first.predicted_class_id, "ann", "v1", first.predicted_class_id),
        (second.item_id, "correct", wrong, "ann", "v1", second.predicted_class_id),
        (third.item_id, "skip", None, "ann", "v1", third.predicted_class_id),
        (fourth.item_id, "reject", None, "ann", "v1", fourth.predicted_class_id),
    ]
    assert "2 labeled · 1 skipped · 1 rejected" in panel.counters
    assert "unlabeled in pool:** 56" in panel.counters
    names = store.class_names(store.open_db(ctx.paths.db))
    assert f"{names[wrong]} 1" in panel.counters and f"{names[first.predicted_class_id]} 1" in panel.counters
    assert panel.notice == f"#{fourth.item_id}: reject."


def test_correct_by_class_name_from_the_dropdown(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    entry = panel.session.current
    target = "Bag" if entry.top3[0][0] != "Bag" else "Coat"
    panel = label_tab.decide_item(ctx, panel.session, entry.item_id, "correct", target, as_user("ann"))
    names = store.class_names(store.open_db(ctx.paths.db))
    assert events(ctx)[-1][:3] == (entry.item_id, "correct", names.index(target))
    with pytest.raises(gr.Error, match="unknown class 'Hat'"):
        label_tab.decide_item(ctx, panel.session, panel.item_id, "correct", "Hat", as_user("ann"))
    with pytest.raises(gr.Error, match="a correction needs a class"):
        label_tab.decide_item(ctx, panel.session, panel.item_id, "correct", "", as_user("ann"))


def test_a_key_meant_for_the_previous_item_records_nothing(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    old_id = panel.item_id
    panel = label_tab.decide_item(ctx, panel.session, old_id, "confirm", None, as_user("ann"))
    again = label_tab.decide_item(ctx, panel.session, old_id, "confirm", None, as_user("ann"))
    assert len(events(ctx)) == 1
    assert "not on screen" in again.notice and again.item_id == panel.item_id


def test_undo_brings_the_item_back_and_fixes_the_counters(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    first = session.current
    panel = label_tab.decide_item(ctx, session, first.item_id, "confirm", None, as_user("ann"))
    second = session.current
    panel = label_tab.undo_last(ctx, session, as_user("ann"))
    assert panel.item_id == first.item_id and session.current.item_id == first.item_id
    assert "brought back by undo" in panel.why
    assert session.queue[0] == second, "the item that was on screen comes right after"
    assert "0 labeled" in panel.counters and "back on screen" in panel.notice
    db = store.open_db(ctx.paths.db)
    last = db.execute("SELECT action, undoes IS NOT NULL FROM labels ORDER BY id DESC LIMIT 1").fetchone()
    assert last == ("undo", 1)
    assert first.item_id not in store.label_state(db)
    assert db.execute("SELECT annotator FROM leases WHERE item_id = ?", [first.item_id]).fetchone() == ("ann",)
    # deciding again works, and then the previously shown item is next
    panel = label_tab.decide_item(ctx, session, first.item_id, "skip", None, as_user("ann"))
    assert panel.item_id == second.item_id
    assert store.label_state(db)[first.item_id] == ("skip", None)
    label_tab.undo_last(ctx, session, as_user("ann"))
    nothing = label_tab.undo_last(ctx, session, as_user("ann"))
    assert nothing.notice == "Nothing to undo."


def test_grid_page_confirms_ticked_and_queues_unticked_first(ctx):
    session = label_tab.load_view(ctx, None, as_user("ann")).session
    shown = session.current.item_id
    counts = np.bincount([e.predicted_class_id for e in labeling.next_items(
        ctx.paths, annotator="probe", n=60, audit_fraction=0.0, take_lease=False)], minlength=10)
    cls = store.class_names(store.open_db(ctx.paths.db))[int(counts.argmax())]
    view = label_tab.load_grid(ctx, session, cls, as_user("ann"))
    page = session.grid
    ids = [e.item_id for e in page]
    assert len(page) >= 3 and shown not in ids
    assert view.ticked["value"] == ids and len(view.gallery) == len(ids)
    assert all(caption.startswith("✓") for _, caption in view.gallery)
    # clicking two photos unticks them
    ticked = view.ticked["value"]
    for index in (0, 2):
        view = label_tab.toggle_grid_item(ctx, session, ticked, index)
        ticked = view.ticked
    assert ticked == [i for i in ids if i not in (ids[0], ids[2])]
    assert view.gallery[0][1].startswith("✗") and view.gallery[1][1].startswith("✓")

    panel, grid = label_tab.confirm_grid(ctx, session, ticked, as_user("ann"))
    recorded = events(ctx)
    assert [(r[0], r[1], r[2]) for r in recorded] == [(i, "confirm", page[0].predicted_class_id) for i in ticked]
    assert panel.item_id == ids[0] and session.queue[0].item_id == ids[2]
    assert session.queue[1].item_id == shown, "the item that was on screen waits behind the corrections"
    assert "grid" in session.current.strategy and "unticked on a grid page" in panel.why
    assert f"{len(ticked)} labeled" in panel.counters
    assert grid.gallery == [] and session.grid == []


def test_two_annotators_get_disjoint_items_and_no_decision_is_lost(ctx):
    ann = label_tab.load_view(ctx, None, as_user("ann")).session
    bob = label_tab.load_view(ctx, None, as_user("bob")).session
    held = {name: {s.current.item_id, *(e.item_id for e in s.queue)} for name, s in (("ann", ann), ("bob", bob))}
    assert held["ann"] and held["bob"] and not (held["ann"] & held["bob"])

    def work(name, session):
        for _ in range(8):
            label_tab.decide_item(ctx, session, session.current.item_id, "confirm", None, as_user(name))

    threads = [threading.Thread(target=work, args=pair) for pair in (("ann", ann), ("bob", bob))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ann_items, bob_items = [e[0] for e in events(ctx, "ann")], [e[0] for e in events(ctx, "bob")]
    assert len(ann_items) == 8 and len(bob_items) == 8
    assert len(set(ann_items) | set(bob_items)) == 16, "nobody labeled an item the other was given"


def test_strategy_and_class_filter_refetch_and_release_the_old_queue(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    old = {panel.session.current.item_id, *(e.item_id for e in panel.session.queue)}
    cls = panel.session.current.top3[0][0]
    panel = label_tab.set_queue_options(ctx, panel.session, "entropy", cls, as_user("ann"))
    session = panel.session
    names = store.class_names(store.open_db(ctx.paths.db))
    assert session.strategy == "entropy" and session.class_filter == names.index(cls)
    assert all(e.predicted_class_id == names.index(cls) for e in [session.current, *session.queue])
    bob = labeling.next_items(ctx.paths, annotator="bob", n=60, take_lease=False)
    now_held = {session.current.item_id, *(e.item_id for e in session.queue)}
    assert (old - now_held) <= {e.item_id for e in bob}, "released items are free for others again"
    with pytest.raises(gr.Error, match="unknown strategy"):
        label_tab.set_queue_options(ctx, session, "best", None, as_user("ann"))


def test_lead_adds_a_class_and_it_can_be_used_at_once(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    with pytest.raises(gr.Error, match="may not"):
        label_tab.add_class(ctx, panel.session, "Hat", as_user("ann"))
    added = label_tab.add_class(ctx, None, "Hat", as_user("lee"))
    assert added.other_class["choices"][-1] == "Hat" and added.class_filter["choices"][-1] == "Hat"
    refreshed = label_tab.refresh(ctx, panel.session, as_user("ann"))
    assert refreshed.other_class["choices"][-1] == "Hat", "other sessions see the class on the next poll"
    label_tab.decide_item(ctx, panel.session, panel.item_id, "correct", "Hat", as_user("ann"))
    assert events(ctx)[-1][1:3] == ("correct", 10)


def test_without_a_model_the_tab_shows_the_seed_job_progress(tmp_path, fmnist_dir):
    paths = resolve_paths(tmp_path / "fresh", fmnist_dir)
    ctx = UIContext(paths, {})
    assert "No model yet" in label_tab.load_view(ctx, None, None).notice
    db = store.open_db(paths.db)
    db.execute("INSERT INTO jobs (kind, status, params, pid, phase, epoch, epochs, batch, batches, "
               "created_at, heartbeat_at) VALUES ('train', 'running', '{\"mode\": \"scratch\"}', ?, "
               "'train', 2, 5, 10, 100, ?, ?)", [os.getpid(), store.now(), store.now()])
    panel = label_tab.load_view(ctx, None, None)
    assert panel.item_id is None
    assert panel.notice.startswith("Training the seed model: epoch 2/5, batch 10/100 (22%)")
    db.execute("UPDATE jobs SET status = 'failed', message = 'DatasetError: files missing from /x'")
    assert "failed: DatasetError: files missing from /x" in label_tab.refresh(ctx, None, None).notice
    assert jobs.active_job(db) is None
