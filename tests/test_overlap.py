"""Overlap: a random share of decided items goes to k different annotators, checked in labels.db.

Real queue (labeling.next_items / decide) on a real labels.db with the tiny real model; the
votes are read back with store.annotator_votes, the input of agreement and consensus.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from activelearn import agreement, labeling, scoring, store
from activelearn.config import resolve_paths
from activelearn.errors import ActiveLearnError
from tests.helpers import add_items


def label_round_robin(paths, annotators: list[str], decisions: int, seed: int = 0) -> list[labeling.QueueEntry]:
    """Each annotator in turn takes their next item and confirms it (the model's class); returns what was served."""
    served = []
    for k in range(decisions):
        who = annotators[k % len(annotators)]
        entry = labeling.next_items(paths, annotator=who, n=1, seed=seed + k, holdout_share=0.0)[0]
        labeling.decide(paths, annotator=who, item_id=entry.item_id, action="confirm",
                        class_id=entry.predicted_class_id if entry.predicted_class_id is not None else 0,
                        entry=entry)
        served.append(entry)
    return served


def voters(db) -> dict[int, list[str]]:
    by_item: dict[int, list[str]] = {}
    for item, who, _, _ in store.annotator_votes(db):
        by_item.setdefault(item, []).append(who)
    return by_item


@pytest.fixture
def pool(seeded_home):
    add_items(seeded_home, 240)
    scoring.score_items(seeded_home)
    return seeded_home


def test_off_by_default_no_decided_item_is_served_again(pool):
    db = store.open_db(pool.db)
    assert not labeling.overlap_setting(db).on
    label_round_robin(pool, ["ann", "bob", "cy"], 60)
    assert all(len(who) == 1 for who in voters(db).values())
    assert len(voters(db)) == 60


def test_every_drawn_item_gets_k_votes_from_different_people_and_no_one_twice(pool):
    db = store.open_db(pool.db)
    labeling.set_overlap(db, 0.25, k=3)
    served = label_round_robin(pool, ["ann", "bob", "cy", "dee"], 200)
    votes = voters(db)
    drawn = set(np.flatnonzero(agreement.overlap_draw(np.arange(max(votes) + 1), 0.25)).tolist())
    for item, who in votes.items():
        assert len(who) == len(set(who)), f"item {item} went twice to one person: {who}"
        assert len(who) == 1 or item in drawn, f"item {item} was not drawn but has votes of {who}"
        assert len(who) <= 3
    overlapped = [e for e in served if e.strategy == labeling.OVERLAP]
    assert overlapped and all(e.is_audit for e in overlapped)     # reads like the audit slice
    # served first: every drawn item but the newest few already has its three votes
    first_votes = sorted(item for item in votes if item in drawn)
    assert Counter(len(votes[i]) for i in first_votes[:-3]) == {3: len(first_votes) - 3}
    # the labels table holds one event per vote, each with the annotator who cast it
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 200


def test_overlapped_share_of_items_follows_the_setting(pool):
    db = store.open_db(pool.db)
    labeling.set_overlap(db, 0.1, k=2)
    label_round_robin(pool, [f"ann{k}" for k in range(5)], 220)
    votes = voters(db)
    share = sum(len(who) >= 2 for who in votes.values()) / len(votes)
    drawn = agreement.overlap_draw(np.array(sorted(votes)), 0.1).mean()
    assert share == pytest.approx(drawn, abs=0.02)    # each drawn item got its second vote
    assert 0.02 < share < 0.2


def test_a_vote_withdrawn_by_undo_can_be_cast_again(pool):
    db = store.open_db(pool.db)
    labeling.set_overlap(db, 1.0, k=2)
    first = label_round_robin(pool, ["ann"], 1)[0]
    second = labeling.next_items(pool, annotator="bob", n=1, holdout_share=0.0)[0]
    assert second.item_id == first.item_id and second.served_event_id == store.current_event(db, first.item_id)
    assert labeling.next_items(pool, annotator="ann", n=1, holdout_share=0.0)[0].item_id != first.item_id
    labeling.decide(pool, annotator="bob", item_id=second.item_id, action="correct", class_id=9, entry=second)
    assert sorted(voters(db)[first.item_id]) == ["ann", "bob"]
    assert labeling.next_items(pool, annotator="cy", n=1, holdout_share=0.0)[0].item_id != first.item_id  # k=2 met
    store.undo(db, annotator="bob", item_id=first.item_id)
    again = labeling.next_items(pool, annotator="cy", n=1, holdout_share=0.0)[0]
    assert again.item_id == first.item_id


def test_overlap_works_before_any_model(tmp_path):
    paths = resolve_paths(tmp_path / "cold")
    add_items(paths, 20)
    db = store.open_db(paths.db)
    labeling.set_overlap(db, 1.0, k=2)
    entry = labeling.next_items(paths, annotator="ann", n=1)[0]
    labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="confirm", class_id=2, entry=entry)
    again = labeling.next_items(paths, annotator="bob", n=3)
    assert again[0].item_id == entry.item_id and again[0].strategy == labeling.OVERLAP
    assert len({e.item_id for e in again}) == 3


@pytest.mark.parametrize(("share", "k", "message"), [(1.5, 2, "between 0 and 1"), (-0.1, 2, "between 0 and 1"),
                                                     (0.1, 1, "2 to 10"), (0.1, 11, "2 to 10")])
def test_bad_overlap_settings_are_refused_and_change_nothing(tmp_path, share, k, message):
    db = store.open_db(resolve_paths(tmp_path / "home").db)
    labeling.set_overlap(db, 0.1, k=2)
    with pytest.raises(ActiveLearnError, match=message):
        labeling.set_overlap(db, share, k)
    assert labeling.overlap_setting(db) == labeling.Overlap(0.1, 2, 0)


def test_the_draw_is_a_fixed_coin_per_item():
    ids = np.arange(1, 50_001)
    drawn = agreement.overlap_draw(ids, 0.1)
    assert drawn.mean() == pytest.approx(0.1, abs=0.005)
    assert np.array_equal(agreement.overlap_draw(ids[::7], 0.1), drawn[::7])   # the same whatever else is asked
    assert not agreement.overlap_draw(ids, 0.0).any() and agreement.overlap_draw(ids, 1.0).all()
    assert (agreement.overlap_draw(ids, 0.1) != agreement.overlap_draw(ids, 0.1, seed=1)).any()
    with pytest.raises(agreement.AgreementError):
        agreement.overlap_draw(ids, 1.2)


def test_the_train_tab_sets_overlap_for_a_lead_only(tmp_path):
    import gradio as gr

    from activelearn.ui import train_tab
    from activelearn.ui.context import UIContext

    paths = resolve_paths(tmp_path / "home")
    ctx = UIContext(paths, {"lena": "lead", "ann": "annotator"})
    assert "Overlap is off" in train_tab.overlap_note(ctx)
    with pytest.raises(gr.Error, match="may not"):
        train_tab.set_overlap(ctx, 10, 2, gr.Request(username="ann"))
    db = store.open_db(paths.db)
    assert not labeling.overlap_setting(db).on
    note = train_tab.set_overlap(ctx, 15, 3, gr.Request(username="lena"))
    assert labeling.overlap_setting(db) == labeling.Overlap(0.15, 3, 0)
    assert "15% of labeled items" in note and "3 different annotators" in note
    with pytest.raises(gr.Error, match="2 to 10"):
        train_tab.set_overlap(ctx, 10, 1, gr.Request(username="lena"))
    train_tab.set_overlap(ctx, 0, 2, gr.Request(username="lena"))
    assert not labeling.overlap_setting(db).on


def test_each_decision_records_how_it_reached_the_annotator(pool):
    db = store.open_db(pool.db)
    labeling.set_overlap(db, 1.0, k=2)
    first = label_round_robin(pool, ["ann"], 1)[0]
    label_round_robin(pool, ["bob"], 1)             # bob gets ann's item back for a second vote
    vias = db.execute("SELECT annotator, via FROM labels ORDER BY id").fetchall()
    assert vias[0] == ("ann", "audit" if first.is_audit else first.strategy)
    assert vias[1] == ("bob", "overlap")


def test_a_leads_resolution_outranks_the_majority_in_training_labels(pool):
    from activelearn.retrain import _human_labels

    db = store.open_db(pool.db)
    item = add_items(pool, 1, start=900)[0]
    for who, cls in (("ann", 1), ("bob", 1), ("cy", 2)):
        store.record_label(db, item, "confirm", class_id=cls, annotator=who)
    assert labeling.consensus_labels(db)[item] == 1
    store.record_decision(db, item, "correct", class_id=2, annotator="lee", via=store.RESOLVE)  # 2 to 2 now
    assert labeling.consensus_labels(db)[item] == 2 and store.resolved_labels(db) == {item: 2}
    ids, classes = _human_labels(db)
    assert dict(zip(ids.tolist(), classes.tolist()))[item] == 2
    store.record_label(db, item, "confirm", class_id=1, annotator="dee")   # a later vote: no longer resolved
    assert store.resolved_labels(db) == {} and labeling.consensus_labels(db)[item] == 1
