"""The Browse tab's handlers on a real labels.db and tiny model: filters, keyset pages, relabeling, roles.

The last test drives a real server with gradio_client, logged in as an
annotator: Browse and relabeling answer, every lead-only endpoint refuses.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from activelearn import labeling, scoring, store
from activelearn.ui import browse_tab
from activelearn.ui.browse_tab import BrowseFilters, Paging
from activelearn.ui.context import ACTION_PHRASES, UIContext
from tests.helpers import add_items, free_port

LEAD = gr.Request(username="lena")
ANNOTATOR = gr.Request(username="ann")
ROLES = {"lena": "lead", "ann": "annotator"}


@pytest.fixture
def home(seeded_home):
    """130 items (30 in the holdout), 20 labeled by bob, 5 skipped by ann, 3 marked near-duplicates."""
    pool = add_items(seeded_home, 100)
    held = add_items(seeded_home, 30, start=1000, split="holdout")
    db = store.open_db(seeded_home.db)
    for item in pool[:20]:
        store.record_label(db, item, "confirm", class_id=item % 3, annotator="bob")
    for item in pool[20:25]:
        store.record_label(db, item, "skip", annotator="ann")
    return seeded_home, pool, held


def all_pages(ctx: UIContext, filters: BrowseFilters, request) -> tuple[list[list[int]], Paging]:
    view = browse_tab.first_page(ctx, filters, request)
    pages = [view.paging.ids]
    while view.next["interactive"]:
        view = browse_tab.next_page(ctx, view.paging, request)
        pages.append(view.paging.ids)
    return pages, view.paging


def test_keyset_pages_cover_every_item_once_and_go_back(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    pages, paging = all_pages(ctx, BrowseFilters(), LEAD)
    assert [len(p) for p in pages] == [48, 48, 34] and paging.total == 130
    flat = [i for p in pages for i in p]
    assert flat == sorted(pool + held), "ascending ids, each item exactly once"
    back = browse_tab.previous_page(ctx, paging, LEAD)
    assert back.paging.ids == pages[1] and back.previous["interactive"]
    first = browse_tab.previous_page(ctx, back.paging, LEAD)
    assert first.paging.ids == pages[0] and not first.previous["interactive"]
    assert "**130 items match** · page 1 of 3" in first.note


def test_filters_status_label_annotator_split_and_name(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    ids = lambda **f: [i for p in all_pages(ctx, BrowseFilters(**f), LEAD)[0] for i in p]  # noqa: E731
    assert ids(status="labeled") == pool[:20]
    assert ids(status="skipped", annotator="ann") == pool[20:25]
    assert ids(class_id=1) == [i for i in pool[:20] if i % 3 == 1]
    assert ids(status="unlabeled", split="holdout") == held
    assert ids(name_contains="7.png") == sorted(i for i in pool + held
                                                 if "7.png" in store.get_item(store.open_db(paths.db), i)["original_name"])
    today = store.now()[:10]
    assert ids(since=today, annotator="bob") == pool[:20] and ids(until="2000-01-01") == []


def test_predicted_class_filter_takes_the_active_models_argmax(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    scores = scoring.score_items(paths)
    busiest = int(np.bincount(scores.probs.argmax(1)).argmax())
    want = sorted(int(i) for i in scores.item_ids[scores.probs.argmax(1) == busiest])
    got = [i for p in all_pages(ctx, BrowseFilters(predicted_id=busiest), LEAD)[0] for i in p]
    assert got == want and got
    both = [i for p in all_pages(ctx, BrowseFilters(predicted_id=busiest, status="unlabeled"), LEAD)[0] for i in p]
    assert both == [i for i in want if i not in pool[:25]]


def test_read_filters_turns_any_and_blanks_into_no_filter():
    assert browse_tab.read_filters("any", -1, -1, "Anyone", "  ", "", None, "any", "any") == BrowseFilters()
    assert browse_tab.read_filters("labeled", 2, 0, " bob ", "shoe", "2025-01-01", "", "pool", "flagged") == \
        BrowseFilters("labeled", 2, 0, "bob", "shoe", "pool", "2025-01-01", None, True)
    assert browse_tab.read_filters("any", -1, -1, "Anyone", "", "", "", "any", "not-flagged").flagged is False


def test_thumbnails_are_cached_files_and_captions_name_the_label(home):
    paths, pool, held = home
    view = browse_tab.first_page(UIContext(paths, ROLES), BrowseFilters(), LEAD)
    picture, caption = view.gallery[0]
    assert Path(picture).is_file() and Path(picture).parent == paths.cache / "thumbs"
    names = store.class_names(store.open_db(paths.db))
    assert caption == f"#{pool[0]} {names[pool[0] % 3]}"
    assert view.gallery[20][1] == f"#{pool[20]} skipped" and view.gallery[30][1] == f"#{pool[30]}"


def test_holdout_is_shown_to_leads_only(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    with pytest.raises(gr.Error, match=f"ann \\(annotator\\) may not {ACTION_PHRASES['holdout']}"):
        browse_tab.first_page(ctx, BrowseFilters(split="holdout"), ANNOTATOR)
    last = browse_tab.show_page(ctx, Paging(starts=[None, 48, 96]), ANNOTATOR)   # the page holding the holdout
    assert not any(" H" in caption for _, caption in last.gallery)
    assert any(" H" in caption for _, caption in browse_tab.show_page(ctx, Paging(starts=[None, 48, 96]),
                                                                       LEAD).gallery)
    assert " · holdout" not in browse_tab.open_item(ctx, held[0], ANNOTATOR).details
    assert "holdout" in browse_tab.open_item(ctx, held[0], LEAD).details


def test_relabel_records_a_new_event_and_keeps_the_old_one(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    db = store.open_db(paths.db)
    item = pool[3]                       # labeled class 0 by bob
    before = db.execute("SELECT id, action, class_id, annotator FROM labels WHERE item_id = ?", [item]).fetchall()
    opened = browse_tab.open_item(ctx, item, ANNOTATOR)
    assert "Current label: **" in opened.details and "by bob" in opened.details
    predicted = labeling.lookup(paths, item).predicted_class_id
    target = (predicted + 1) % 10        # not the model's class: stored as a correction
    note, again = browse_tab.relabel(ctx, item, "label", target, ANNOTATOR)
    rows = db.execute("SELECT id, action, class_id, annotator, predicted_class_id, model_version FROM labels "
                      "WHERE item_id = ? ORDER BY id", [item]).fetchall()
    assert [r[:4] for r in rows[:-1]] == before, "the earlier event is kept, unchanged"
    assert rows[-1][1:] == ("correct", target, "ann", predicted, "v1")
    assert store.label_state(db)[item] == ("correct", target)
    names = store.class_names(db)
    assert note.startswith(f"Stored #{item}: correct → {names[target]}") and f"**{names[target]}**" in again.details

    note, _ = browse_tab.relabel(ctx, item, "reject", None, LEAD)
    assert store.label_state(db)[item] == ("reject", None) and "reject" in note
    assert db.execute("SELECT COUNT(*) FROM labels WHERE item_id = ?", [item]).fetchone()[0] == len(before) + 2


def test_relabel_refuses_bad_input_and_an_item_on_someone_elses_screen(home):
    paths, pool, held = home
    ctx = UIContext(paths, ROLES)
    db = store.open_db(paths.db)
    count = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    with pytest.raises(gr.Error, match="choose the class"):
        browse_tab.relabel(ctx, pool[40], "label", None, ANNOTATOR)
    with pytest.raises(gr.Error, match="unknown class id 99"):
        browse_tab.relabel(ctx, pool[40], "label", 99, ANNOTATOR)
    with pytest.raises(gr.Error, match="open an item first"):
        browse_tab.relabel(ctx, None, "label", 1, ANNOTATOR)
    labeling.lease(db, [pool[41]], "carol")            # carol has it on screen in the Label tab
    with pytest.raises(gr.Error, match="being labeled by carol"):
        browse_tab.relabel(ctx, pool[41], "label", 1, ANNOTATOR)
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == count, "nothing stored"


# ---------------------------------------------------------------- through a real server

LEAD_ONLY_CALLS = [  # (api name, arguments, the action named in the refusal)
    ("/import_files", (None, "/nonexistent", False, 0.0), "import"),
    ("/start_training", ("finetune", 1, 0.02, False, "mobilenet_v1_0.25"), "train"),
    ("/cancel_training", (), "train"),
    ("/start_embedding", ("mobilenet_v1_0.25",), "train"),
    ("/set_auto_retrain", (True, 10), "train"),
    ("/activate_version", ("v1",), "activate"),
    ("/export", ("csv", [], False, False, None, "", "", True), "export"),
    ("/find_label_issues", (), "fix-labels"),
]


def test_annotator_over_http_browses_relabels_and_is_refused_lead_actions(home):
    from gradio_client import Client

    from activelearn.ui import build_app, launch_app
    from activelearn.ui.auth import User

    paths, pool, held = home
    users = [User("lena", "pw-lead", "lead"), User("ann", "pw-ann", "annotator")]
    app = build_app(paths, {u.name: u.role for u in users})
    _, url, _ = launch_app(app, paths, users, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, auth=("ann", "pw-ann"), verbose=False)
        db = store.open_db(paths.db)
        items_before = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        for api_name, args, action in LEAD_ONLY_CALLS:
            with pytest.raises(Exception, match=f"ann \\(annotator\\) may not {ACTION_PHRASES[action]}"):
                client.predict(*args, api_name=api_name)
        assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == items_before
        assert not (paths.data / "exports").exists() or not any((paths.data / "exports").iterdir())

        gallery, note = client.predict("labeled", -1, -1, "Anyone", "", "", "", "any", "any",
                                       api_name="/browse")[:2]   # the state and the buttons are not API outputs
        assert "**20 items match**" in note and len(gallery) == 20
        with pytest.raises(Exception, match=ACTION_PHRASES["holdout"]):
            client.predict("any", -1, -1, "Anyone", "", "", "", "holdout", "any", api_name="/browse")
        outputs = client.predict(pool[5], 4, None, api_name="/relabel")
        assert outputs[0].startswith(f"Stored #{pool[5]}")
        assert db.execute("SELECT action, class_id, annotator FROM labels ORDER BY id DESC LIMIT 1").fetchone() \
            in {("confirm", 4, "ann"), ("correct", 4, "ann")}
    finally:
        app.close()
