"""The Label tab's handlers on a real labels.db, real imported photos and the tiny real model."""

from __future__ import annotations

import html
import os
import re
import threading
from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from activelearn import ingest, jobs, labeling, scoring, store, ui
from activelearn.errors import StoreError
from activelearn.label_session import REFILL_BELOW
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
    preview = np.asarray(Image.open(panel.preview))
    assert preview.shape == (224, 224) and preview.dtype == np.uint8
    assert np.array_equal(preview[::8, ::8], np.frombuffer(item["pixels"], np.uint8).reshape(28, 28))
    # enlarged by pixel repetition, not smoothed
    assert np.array_equal(preview, np.repeat(np.repeat(preview[::8, ::8], 8, axis=0), 8, axis=1))
    assert list(panel.top3) == [name for name, _ in entry.top3] and len(panel.top3) == 3
    assert "Why this item:" in panel.why and f"#{entry.item_id}" in panel.why and "model v1" in panel.why
    assert panel.confirm_label.startswith(f"✓ {entry.top3[0][0]}") and "(a, Enter)" in panel.confirm_label
    assert len(panel.session.queue) >= REFILL_BELOW - 1, "the next items are prefetched"
    assert "0 labeled · 0 skipped · 0 rejected · 60 unlabeled in pool" in panel.counters
    assert panel.classes == tuple(store.class_names(store.open_db(ctx.paths.db)))
    assert "0 of 60 items labeled (0%) · 60 left in the pool" in panel.progress
    assert "No decisions yet" in panel.history and panel.history_rows == []


def test_why_this_item_states_the_models_numbers(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    entry = panel.session.current
    (n1, p1), (n2, p2), (n3, p3) = entry.top3
    scores = scoring.score_items(ctx.paths)
    probs = np.sort(scores.probs[scores.rows([entry.item_id])[0]])[::-1]
    assert (p1, p2) == pytest.approx((probs[0], probs[1])), "the numbers are the model's probabilities"
    assert f"margin: top two {p1:.0%} vs {p2:.0%} ({n1} vs {n2})" in panel.why
    item = store.get_item(store.open_db(ctx.paths.db), entry.item_id)
    for strategy, text in (
            ("entropy", f"entropy {entry.score:.2f} nats, spread over {n1} {p1:.0%}, {n2} {p2:.0%}, {n3} {p3:.0%}"),
            ("least-confidence", f"the top class, {n1}, has only {p1:.0%}"),
            ("audit", f"not by uncertainty, so the model is also checked where it is sure; the model says {n1} {p1:.0%}"),
            ("undo", f"brought back by undo; the model says {n1} {p1:.0%}")):
        assert text in label_tab._why(replace(entry, strategy=strategy), item)
    holdout_draw = replace(entry, strategy="random", is_audit=True)  # served like the audit slice
    assert "**audit**: picked at random" in label_tab._why(holdout_draw, item)


def test_counters_are_labels_db_counts_like_the_header(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    bob = label_tab.load_view(ctx, None, as_user("bob")).session
    for action in ("confirm", "skip", "reject"):
        label_tab.decide_item(ctx, bob, bob.current.item_id, action, None, as_user("bob"))
    ticked = label_tab.refresh(ctx, panel.session, as_user("ann"))
    counts = store.status(store.open_db(ctx.paths.db)).as_dict()
    assert (counts["labeled"], counts["skipped"], counts["rejected"], counts["unlabeled_pool"]) == (1, 1, 1, 57)
    assert "1 labeled · 1 skipped · 1 rejected · 57 unlabeled in pool" in ticked.counters, \
        "a poll shows the other annotators' decisions too"
    panel = label_tab.decide_item(ctx, panel.session, panel.item_id, "confirm", None, as_user("ann"))
    assert "2 labeled · 1 skipped · 1 rejected · 56 unlabeled in pool" in panel.counters
    assert "2 labeled · 56 unlabeled" in ui.header_html(ctx, as_user("ann")), "the header reads the same counts"


def test_confirm_correct_skip_reject_record_the_user_and_advance(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    first = session.current
    panel = label_tab.decide_item(ctx, session, panel.item_id, "confirm", None, as_user("ann"))
    second = session.current
    assert second.item_id != first.item_id and panel.item_id == second.item_id
    # a class neither item was predicted as, so each class's count below is its own
    wrong = next(c for c in range(10) if c not in (first.predicted_class_id, second.predicted_class_id))
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
    assert "2 labeled · 1 skipped · 1 rejected · 56 unlabeled in pool" in panel.counters
    names = store.class_names(store.open_db(ctx.paths.db))
    assert f"{names[wrong]} 1" in panel.counters and f"{names[first.predicted_class_id]} 1" in panel.counters
    assert panel.notice == f"Stored #{fourth.item_id}: reject."


def test_the_notice_says_what_labels_db_stored(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    names = store.class_names(store.open_db(ctx.paths.db))
    first = session.current
    panel = label_tab.decide_item(ctx, session, first.item_id, "confirm", None, as_user("ann"))
    assert panel.notice == f"Stored #{first.item_id}: confirm → {names[first.predicted_class_id]}."
    second = session.current
    wrong = (second.predicted_class_id + 1) % 10
    panel = label_tab.decide_item(ctx, session, second.item_id, "confirm", wrong, as_user("ann"))
    assert store.label_state(store.open_db(ctx.paths.db))[second.item_id] == ("correct", wrong)
    assert panel.notice == (f"Stored #{second.item_id}: correct → {names[wrong]} "
                            f"(the model said {second.top3[0][0]}).")
    panel = label_tab.undo_last(ctx, session, as_user("ann"))
    assert panel.notice == f"Undid correct → {names[wrong]} on #{second.item_id}: it is back on screen."


def test_the_api_takes_a_class_id_or_a_class_name(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    entry = panel.session.current
    target = "Bag" if entry.top3[0][0] != "Bag" else "Coat"
    panel = label_tab.decide_from_api(ctx, panel.session, entry.item_id, "correct", target, as_user("ann"))
    names = store.class_names(store.open_db(ctx.paths.db))
    assert events(ctx)[-1][:3] == (entry.item_id, "correct", names.index(target))
    entry = panel.session.current
    panel = label_tab.decide_from_api(ctx, panel.session, entry.item_id, "confirm", "3", as_user("ann"))
    assert events(ctx)[-1][:3] == (entry.item_id, "confirm" if entry.predicted_class_id == 3 else "correct", 3)
    with pytest.raises(gr.Error, match="unknown class 'Hat'"):
        label_tab.decide_from_api(ctx, panel.session, panel.item_id, "correct", "Hat", as_user("ann"))
    with pytest.raises(gr.Error, match="unknown class id 99"):
        label_tab.decide_from_api(ctx, panel.session, panel.item_id, "correct", "99", as_user("ann"))
    with pytest.raises(gr.Error, match="a correction needs a class"):
        label_tab.decide_from_api(ctx, panel.session, panel.item_id, "correct", "", as_user("ann"))
    assert len(events(ctx)) == 2, "refused decisions record nothing"


def test_class_ids_are_never_read_as_class_names(ctx):
    """A class *named* "3" (allowed before names were checked) must not catch the decisions meant for id 3."""
    db = store.open_db(ctx.paths.db)
    db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (10, '3', NULL, ?)", [store.now()])
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    for class_id in (3, 10):  # the "4 · Dress" button, then the button of the class named "3"
        item = session.current.item_id
        label_tab.decide_item(ctx, session, item, "confirm", class_id, as_user("ann"))
        assert store.label_state(db)[item][1] == class_id
    item = session.current.item_id
    label_tab.decide_from_api(ctx, session, item, "confirm", "3", as_user("ann"))
    assert store.label_state(db)[item][1] == 3, "digits through the API are an id too"
    label_tab.set_queue_options(ctx, session, "margin", 3, as_user("ann"))
    assert session.class_filter == 3


@pytest.mark.parametrize(("name", "message"), [
    ("3", "cannot be only digits"), (" 42 ", "cannot be only digits"),
    ("a<b", "HTML markup characters"), ("b>a", "HTML markup characters"), ("R&D", "HTML markup characters"),
    ("hat/cap", "cannot contain '/'"), ("..", "cannot contain '..'"), ("up..down", "cannot contain '..'"),
    ("tab\tname", "control characters \\(found U\\+0009"), ("nul\x00", "control characters"),
    ("del\x7f", "control characters"), ("csi\x9b", "control characters"),
    ("evil\u202egnp.exe", "direction overrides \\(found U\\+202E"), ("\u2066isolate", "direction overrides"),
    ("\u202aembed", "direction overrides"), ("pop\u2069", "direction overrides"),
])
def test_add_class_refuses_names_that_would_be_misread(tmp_path, name, message):
    db = store.open_db(tmp_path / "labels.db")
    with pytest.raises(StoreError, match=message):
        store.add_class(db, name)
    assert len(store.class_names(db)) == 10, "nothing was added"


def test_add_class_accepts_ordinary_names(tmp_path):
    db = store.open_db(tmp_path / "labels.db")
    for name in ("Size 3", "T-shirt v2.0", "Bucket hat", "Ärmel · lang", "3D print"):
        store.add_class(db, name)
    assert store.class_names(db)[10:] == ["Size 3", "T-shirt v2.0", "Bucket hat", "Ärmel · lang", "3D print"]


def test_keymap_is_prodigy_style_and_every_class_gets_a_key():
    keymap = label_tab.KEYMAP
    assert (keymap["a"], keymap["x"], keymap[" "], keymap["Backspace"]) == ("accept", "reject", "skip", "undo")
    assert (keymap["Enter"], keymap["s"], keymap["z"]) == ("accept", "skip", "undo"), "the earlier keys still work"
    keys = label_tab.CLASS_KEYS
    assert len(set(keys)) == len(keys) and not set(keys) & set(keymap), "no key means two things"
    assert keys.startswith("1234567890") and keys[10:].isalpha()
    assert set(keymap.values()) - {"find"} == set(label_tab.COMMAND_BUTTONS)
    names = [f"class {i}" for i in range(len(keys) + 2)]
    legend = label_tab.key_legend(names)
    assert "a, Enter = accept" in legend and "Space, s = skip" in legend and "Backspace, z = undo" in legend
    assert "1 class 0" in legend and "0 class 9" in legend and "q class 10" in legend
    assert f"{keys[-1]} class {len(keys) - 1}" in legend and "the other 2 classes: / finds them" in legend
    assert label_tab.class_button_label(10, "Hat") == "q · Hat" and label_tab.class_button_label(99, "Cap") == "Cap"
    script = label_tab.keys_js()
    assert "__" + "KEYMAP__" not in script and '"Backspace": "undo"' in script and keys in script


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
    assert "0 labeled · 0 skipped" in panel.counters and "back on screen" in panel.notice
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


def busiest_class(ctx: UIContext) -> int:
    """The class the tiny model predicts most often among the unlabeled photos."""
    probe = labeling.next_items(ctx.paths, annotator="probe", n=60, audit_fraction=0.0, take_lease=False,
                                holdout_share=0.0)
    return int(np.bincount([e.predicted_class_id for e in probe], minlength=10).argmax())


def test_grid_page_confirms_exactly_the_ticked_as_the_page_class_and_moves_on(ctx, monkeypatch):
    monkeypatch.setattr(label_tab, "GRID_SIZE", 5)
    session = label_tab.load_view(ctx, None, as_user("ann")).session
    held = {e.item_id for e in session.held()}
    cls = busiest_class(ctx)
    view = label_tab.load_grid(ctx, session, cls, as_user("ann"))
    page = list(session.grid)
    ids = [e.item_id for e in page]
    assert len(page) >= 3 and not set(ids) & held, "the grid never shows what the one-by-one queue holds"
    assert {e.predicted_class_id for e in page} == {cls}
    assert view.ticked["value"] == ids and [c for _, c in view.ticked["choices"]] == ids
    assert [caption for _, caption in view.gallery] == [f"#{e.item_id} · {e.confidence:.0%}" for e in page]
    assert view.token == ",".join(map(str, ids))
    names = store.class_names(store.open_db(ctx.paths.db))
    assert f"photos the model calls {names[cls]}" in view.grid_notice

    # untick the first and the third; the others are stored as the page's class, nothing else is
    ticked = [i for i in ids if i not in (ids[0], ids[2])]
    shown = session.current.item_id
    panel, grid = label_tab.confirm_grid(ctx, session, ticked, view.token, cls, as_user("ann"))
    assert [(r[0], r[1], r[2]) for r in events(ctx)] == [(i, "confirm", cls) for i in ticked]
    assert ids[0] not in store.label_state(store.open_db(ctx.paths.db)), "unticked items stay unlabeled"
    assert panel.item_id == ids[0] and session.queue[0].item_id == ids[2]
    assert session.queue[1].item_id == shown, "the item that was on screen waits behind the corrections"
    assert "unticked on a grid page" in panel.why and f"{len(ticked)} labeled" in panel.counters
    assert panel.notice.startswith(f"Confirmed {len(ticked)} items as {names[cls]}; 2 unticked items are next")
    # auto-advance: the next page is there, without the decided or the unticked items
    following = [e.item_id for e in session.grid]
    assert grid.token == ",".join(map(str, following)) and grid.ticked["value"] == following
    assert following and not set(following) & set(ids)


def test_a_confirm_meant_for_another_page_records_nothing(ctx, monkeypatch):
    monkeypatch.setattr(label_tab, "GRID_SIZE", 4)
    cls = busiest_class(ctx)
    view = label_tab.load_grid(ctx, None, cls, as_user("ann"))
    session = view.session
    ids = view.ticked["value"]
    label_tab.confirm_grid(ctx, session, ids, view.token, cls, as_user("ann"))
    assert len(events(ctx)) == len(ids)
    # the same press again (Enter held, or a double click) while the next page is on its way
    panel, grid = label_tab.confirm_grid(ctx, session, ids, view.token, cls, as_user("ann"))
    assert len(events(ctx)) == len(ids) and "nothing recorded" in grid.grid_notice
    # a crafted request naming items that are not on the page
    with pytest.raises(gr.Error, match="not on this page: nothing recorded"):
        label_tab.confirm_grid(ctx, session, [ids[0]], grid_token(session), cls, as_user("ann"))
    assert len(events(ctx)) == len(ids)


def test_confirming_the_last_page_of_a_class_empties_the_grid(ctx, monkeypatch):
    monkeypatch.setattr(label_tab, "GRID_SIZE", 60)
    cls = busiest_class(ctx)
    view = label_tab.load_grid(ctx, None, cls, as_user("ann"))
    ids = view.ticked["value"]
    _, grid = label_tab.confirm_grid(ctx, view.session, ids, view.token, cls, as_user("ann"))
    names = store.class_names(store.open_db(ctx.paths.db))
    assert grid.gallery == [] and grid.ticked["value"] == [] and grid.token == ""
    assert f"No unlabeled items predicted as {names[cls]} left" in grid.grid_notice
    assert len(events(ctx)) == len(ids)


def grid_token(session) -> str:
    return ",".join(str(e.item_id) for e in session.grid)


def test_grid_largest_class_first_and_entering_keeps_a_loaded_page(ctx):
    largest = busiest_class(ctx)
    view = label_tab.enter_grid(ctx, None, label_tab.LARGEST, as_user("ann"))
    session = view.session
    assert session.grid and session.grid[0].predicted_class_id == largest
    again = label_tab.enter_grid(ctx, session, label_tab.LARGEST, as_user("ann"))
    assert again.gallery == gr.skip() and again.ticked == gr.skip(), "re-entering keeps the page and its ticks"
    assert [e.item_id for e in session.grid] == view.ticked["value"]


def test_similarity_order_puts_alike_rows_side_by_side():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8)
    vectors = np.array([a, b, a + 0.01, b + 0.02, a - 0.01, b - 0.01])
    order = label_tab.similarity_order(vectors)
    assert sorted(order) == list(range(6))
    groups = ["a" if i % 2 == 0 else "b" for i in order]
    assert groups in (["a"] * 3 + ["b"] * 3, ["b"] * 3 + ["a"] * 3)
    assert label_tab.similarity_order(vectors[:2]) == [0, 1]


def history_entries(history_html: str) -> list[tuple[str, str]]:
    """(label, details) of each history row, newest first."""
    return [(html.unescape(label), html.unescape(meta)) for label, meta in re.findall(
        r'class="al-history-label">([^<]*)</span><span class="al-history-meta">([^<]*)<', history_html)]


def test_history_lists_the_last_decisions_and_reopening_records_a_new_event(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    session = panel.session
    decided = []
    for action in ("confirm", "skip", "reject", "confirm"):
        decided.append(session.current.item_id)
        panel = label_tab.decide_item(ctx, session, session.current.item_id, action, None, as_user("ann"))
    bob = label_tab.load_view(ctx, None, as_user("bob")).session
    label_tab.decide_item(ctx, bob, bob.current.item_id, "skip", None, as_user("bob"))
    panel = label_tab.load_view(ctx, session, as_user("ann"))
    rows = panel.history_rows
    assert [r["item_id"] for r in rows] == decided[::-1], "newest first, this annotator's only"
    shown = history_entries(panel.history)
    names = store.class_names(store.open_db(ctx.paths.db))
    assert [label for label, _ in shown] == [names[rows[0]["class_id"]], "not a product", "skipped",
                                             names[rows[3]["class_id"]]]
    assert all(meta.startswith(f"#{r['item_id']} · {r['action']} · ") for (_, meta), r in zip(shown, rows))

    # a click on the skipped one puts it on screen; a class key stores a new event, the old one is kept
    skipped = rows[2]["item_id"]
    was_next = session.current.item_id
    panel = label_tab.reopen(ctx, session, rows, 2, as_user("ann"))
    assert panel.item_id == skipped and "re-opened from your history" in panel.why
    assert panel.notice.startswith(f"Re-opened #{skipped}: you stored skip at ")
    panel = label_tab.decide_item(ctx, session, skipped, "confirm", 3, as_user("ann"))
    db = store.open_db(ctx.paths.db)
    stored = db.execute("SELECT action, class_id, predicted_class_id FROM labels WHERE item_id = ? ORDER BY id",
                        [skipped]).fetchall()
    assert [(a, c) for a, c, _ in stored] == [("skip", None), ("confirm" if stored[1][2] == 3 else "correct", 3)]
    assert store.label_state(db)[skipped][1] == 3
    assert panel.item_id == was_next, "then the queue goes on where it was"
    assert [r["item_id"] for r in panel.history_rows][:2] == [skipped, decided[-1]]
    assert history_entries(panel.history)[3][1].endswith("(changed)"), "the superseded decision says so"
    with pytest.raises(gr.Error, match="not in your history"):
        label_tab.reopen(ctx, session, panel.history_rows, 99, as_user("ann"))


def test_progress_text_counts_pace_and_eta_for_the_annotator_and_everyone():
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
    at = lambda minutes: (t0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")  # noqa: E731
    decisions = ([("ann", at(m)) for m in range(31)] +              # 30 gaps of a minute: 60/h
                 [("bob", at(m / 2)) for m in range(41)])           # 40 gaps of 30 s: 120/h
    counts = {"items": {"pool": 400, "holdout": 40}, "labeled": 65, "unlabeled_pool": 360,
              "labeled_per_class": {}, "skipped": 4, "rejected": 2}
    text = label_tab.progress_text(counts, decisions, "ann", t0 + timedelta(minutes=31))
    assert "65 of 440 items labeled (15%)" in text and "360 left in the pool" in text
    assert "180 decisions/h (the annotators working now)" in text and "about 2.0 h of labeling left" in text
    assert "**You (ann):** 31 decisions in the last 12 h · 60/h over 30 min of labeling" in text
    assert "alone at this pace, the pool takes about 6.0 h" in text and "**Others:** bob 120/h" in text
    newcomer = label_tab.progress_text(counts, decisions, "cy", t0 + timedelta(minutes=31))
    assert "**You (cy):** 0 decisions in the last 12 h · no pace yet" in newcomer


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
    shown = panel.session.current
    same = label_tab.set_queue_options(ctx, panel.session, "margin", label_tab.ALL_CLASSES, as_user("ann"))
    assert same.session.current == shown, "re-sending the same options (a dropdown losing focus) keeps the item"
    old = {panel.session.current.item_id, *(e.item_id for e in panel.session.queue)}
    cls = panel.session.current.predicted_class_id
    panel = label_tab.set_queue_options(ctx, panel.session, "entropy", cls, as_user("ann"))
    session = panel.session
    assert session.strategy == "entropy" and session.class_filter == cls
    assert all(e.predicted_class_id == cls for e in [session.current, *session.queue])
    bob = labeling.next_items(ctx.paths, annotator="bob", n=60, take_lease=False)
    now_held = {session.current.item_id, *(e.item_id for e in session.queue)}
    assert (old - now_held) <= {e.item_id for e in bob}, "released items are free for others again"
    with pytest.raises(gr.Error, match="unknown strategy"):
        label_tab.set_queue_options(ctx, session, "best", None, as_user("ann"))


def test_lead_adds_a_class_and_it_can_be_used_at_once(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    with pytest.raises(gr.Error, match="may not"):
        label_tab.add_class(ctx, panel.session, "Hat", as_user("ann"))
    with pytest.raises(gr.Error, match="cannot be only digits"):
        label_tab.add_class(ctx, None, "7", as_user("lee"))
    added = label_tab.add_class(ctx, None, "Hat", as_user("lee"))
    assert added.classes[-1] == "Hat" and added.class_filter["choices"][-1] == ("Hat", 10)
    assert added.grid_class["choices"][-1] == ("Hat", 10) and "key **q**" in added.message
    refreshed = label_tab.refresh(ctx, panel.session, as_user("ann"))
    assert refreshed.classes[-1] == "Hat", "other sessions get the class (its button and key) on the next poll"
    assert "q Hat" in label_tab.key_legend(refreshed.classes)
    label_tab.decide_item(ctx, panel.session, panel.item_id, "correct", 10, as_user("ann"))
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


def test_without_a_model_items_come_in_random_order_and_need_a_class(tmp_path, fmnist_dir):
    from tests.helpers import add_items

    paths = resolve_paths(tmp_path / "cold", fmnist_dir)
    ids = add_items(paths, 12)
    ctx = UIContext(paths, {})
    panel = label_tab.load_view(ctx, None, None)
    assert panel.item_id in ids and panel.top3 is None
    assert "picked at random: no model is active yet" in panel.why
    assert "no prediction yet, pick a class" in panel.confirm_label
    assert "No model yet" in panel.notice and "random order" in panel.notice
    with pytest.raises(gr.Error, match="no model has predicted"):
        label_tab.decide_item(ctx, panel.session, panel.item_id, "confirm", None, None)
    item = panel.item_id
    panel = label_tab.decide_item(ctx, panel.session, item, "confirm", 4, None)
    db = store.open_db(paths.db)
    assert db.execute("SELECT item_id, action, class_id FROM labels").fetchall() == [(item, "confirm", 4)]
    assert panel.item_id in ids and panel.item_id != item
    grid = label_tab.load_grid(ctx, panel.session, label_tab.LARGEST, None)
    assert grid.gallery == [] and "label one by one meanwhile" in grid.grid_notice


def test_a_decision_on_an_item_a_colleague_decided_meanwhile_moves_on_and_keeps_theirs(ctx):
    panel = label_tab.load_view(ctx, None, as_user("ann"))
    item = panel.item_id
    db = store.open_db(ctx.paths.db)
    store.release_leases(db, [item], "ann")        # e.g. ann's lease ran out while she looked away
    store.record_decision(db, item, "confirm", class_id=3, annotator="bob")
    panel = label_tab.decide_item(ctx, panel.session, item, "reject", None, as_user("ann"))
    assert f"item #{item} was decided by bob after it was shown to you" in panel.notice.lower()
    assert "here is the next item" in panel.notice and panel.item_id != item
    assert store.label_state(db)[item] == ("confirm", 3) and events(ctx) == []
