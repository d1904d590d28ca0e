import numpy as np

from activelearn import labeling, store
from tests.helpers import add_items


def test_queue_skips_holdout_and_decided_items_and_leases_per_annotator(seeded_home):
    paths = seeded_home
    ids = add_items(paths, 40)
    db = store.open_db(paths.db)
    db.execute("UPDATE items SET split = 'holdout' WHERE id IN (?, ?)", ids[:2])
    store.record_label(db, ids[2], "confirm", class_id=1, annotator="x")
    store.record_label(db, ids[3], "skip", annotator="x")
    store.record_label(db, ids[4], "reject", annotator="x")
    excluded = set(ids[:5])

    a = labeling.next_items(paths, annotator="ann", n=10, seed=1, holdout_share=0.0)
    b = labeling.next_items(paths, annotator="bob", n=10, seed=1, holdout_share=0.0)
    got_a, got_b = {e.item_id for e in a}, {e.item_id for e in b}
    assert len(got_a) == 10 and len(got_b) == 10
    assert not (got_a & got_b), "two annotators must get different items"
    assert not ((got_a | got_b) & excluded)
    assert sum(e.is_audit for e in a) == 1
    entry = a[0]
    assert len(entry.top3) == 3 and entry.top3[0][1] >= entry.top3[1][1]
    assert entry.model_version == "v1"

    # confirm without a class takes the prediction; a different class is recorded as a correction
    ev = labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="confirm", entry=entry)
    assert ev.action == "confirm" and ev.class_id == entry.predicted_class_id
    other = (a[1].predicted_class_id + 1) % 10
    ev2 = labeling.decide(paths, annotator="ann", item_id=a[1].item_id, action="confirm",
                          class_id=other, entry=a[1])
    assert ev2.action == "correct"
    row = db.execute("SELECT model_version, predicted_class_id, confidence FROM labels WHERE id = ?",
                     [ev2.id]).fetchone()
    assert row[0] == "v1" and row[1] == a[1].predicted_class_id and 0 < row[2] <= 1
    assert not db.execute("SELECT 1 FROM leases WHERE item_id = ?", [a[1].item_id]).fetchone()


def test_grid_page_confirms_ticked_and_returns_unticked(seeded_home):
    paths = seeded_home
    add_items(paths, 60)
    from activelearn import scoring
    scores = scoring.score_items(paths)
    top_class = int(np.bincount(scores.probs.argmax(1)).argmax())
    page = labeling.grid_page(paths, annotator="ann", class_id=top_class, n=12)
    assert page and all(e.predicted_class_id == top_class for e in page)
    confidences = [e.confidence for e in page]
    assert confidences == sorted(confidences, reverse=True)
    ticked = {e.item_id for e in page[1:]}
    events, unticked = labeling.confirm_page(paths, annotator="ann", entries=page, ticked=ticked)
    assert len(events) == len(page) - 1 and [e.item_id for e in unticked] == [page[0].item_id]
    state = store.label_state(store.open_db(paths.db))
    assert all(state[i] == ("confirm", top_class) for i in ticked)
    assert page[0].item_id not in state


def test_holdout_items_are_served_at_a_steady_share_at_random_until_the_target(seeded_home, monkeypatch):
    paths = seeded_home
    pool = add_items(paths, 300)
    holdout = set(add_items(paths, 60, start=5000, split="holdout"))
    db = store.open_db(paths.db)
    served = []
    for step in range(200):
        entry = labeling.next_items(paths, annotator="ann", n=1, seed=step)[0]
        served.append(entry.item_id in holdout)
        if entry.item_id in holdout:
            assert entry.strategy == "random" and entry.is_audit      # looks like the audit slice
        labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="confirm", entry=entry)
    share = sum(served) / len(served)
    assert 0.05 <= share <= 0.17, share                                # binomial(200, 0.1): 0.05-0.15 at 98%
    assert len(store.labeled_holdout(db)) == sum(served)
    # once every class has reached the target, no more holdout items
    monkeypatch.setattr(labeling, "HOLDOUT_TARGET", 0)
    batch = labeling.next_items(paths, annotator="ann", n=50, seed=7)
    assert not {e.item_id for e in batch} & holdout and len(pool) > 200


def test_cold_start_picks_diverse_items_over_backbone_embeddings_until_a_photo_model_exists(seeded_home):
    from activelearn.backbones import DEFAULT_BACKBONE
    paths = seeded_home
    ids = add_items(paths, 40)
    db = store.open_db(paths.db)
    # four tight clusters of ten: k-center over them must visit every cluster first
    centres = np.eye(8, dtype=np.float32)[:4] * 10
    vectors = np.repeat(centres, 10, axis=0) + np.random.default_rng(0).normal(0, 0.1, (40, 8)).astype(np.float32)
    store.put_embeddings(db, DEFAULT_BACKBONE, ids, vectors)
    batch = labeling.next_items(paths, annotator="ann", n=4, seed=0, audit_fraction=0.0, holdout_share=0.0)
    assert {e.strategy for e in batch} == {labeling.COLD_START}
    assert {ids.index(e.item_id) // 10 for e in batch} == {0, 1, 2, 3}


def test_a_class_added_after_the_model_gets_holdout_items_and_an_empty_grid(seeded_home):
    paths = seeded_home
    add_items(paths, 50)
    holdout = set(add_items(paths, 40, start=5000, split="holdout"))
    db = store.open_db(paths.db)
    new_class = store.add_class(db, "Hat").id                   # the active model has 10 outputs
    assert labeling.grid_page(paths, annotator="ann", class_id=new_class) == []
    served = {e.item_id for e in labeling.next_items(paths, annotator="ann", n=20, seed=3, holdout_share=0.5)}
    assert len(served & holdout) == 10                           # drawn although no prediction is "Hat"


def test_scores_are_kept_between_requests_until_items_are_added(seeded_home):
    paths = seeded_home
    add_items(paths, 20)
    first = labeling.workspace(paths).scores()
    assert labeling.workspace(paths).scores() is first, "no re-read of every item id per request"
    new = add_items(paths, 5, start=100)
    again = labeling.workspace(paths).scores()
    assert again is not first and set(new) <= set(again.item_ids.tolist())
    served = {e.item_id for e in labeling.next_items(paths, annotator="ann", n=25, seed=0, holdout_share=0.0)}
    assert set(new) <= served, "new imports are served at once"
