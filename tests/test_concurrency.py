"""Several annotators at once on a real labels.db: atomic leasing, refused conflicting decisions,
decisions stored once per request, and the queue before any model exists.

Threads and spawned processes really race here (barriers release them together); what is
checked is what labels.db holds afterwards.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import replace

import pytest

from activelearn import labeling, registry, scoring, store
from activelearn.config import resolve_paths
from tests.helpers import add_items


def in_threads(count: int, work) -> list:
    """Run work(k) in `count` threads released together; returns results (or exceptions) by k."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(k: int) -> None:
        barrier.wait()
        try:
            results[k] = work(k)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            results[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def event_count(db) -> int:
    return db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]


# ---------------------------------------------------------------- atomic leasing

def test_twenty_simultaneous_fetch_pairs_share_no_item(seeded_home):
    paths = seeded_home
    add_items(paths, 300)
    scoring.score_items(paths)   # scored once, as a running server has them cached
    served: list[set[int]] = []
    for round_ in range(20):
        # the same strategy and seed: both annotators want exactly the same items
        pair = in_threads(2, lambda k: labeling.next_items(paths, annotator=f"ann{k}-{round_}", n=5, seed=0,
                                                           holdout_share=0.0))
        assert not any(isinstance(result, Exception) for result in pair), pair
        a, b = ({e.item_id for e in batch} for batch in pair)
        assert not a & b, f"round {round_}: both were served {sorted(a & b)}"
        served += [a, b]
    everything = [item for batch in served for item in batch]
    assert len(everything) == len(set(everything)) == 200, "live leases kept every later fetch away too"
    leases = store.open_db(paths.db).execute("SELECT item_id, annotator FROM leases").fetchall()
    owner = dict(leases)
    for k, batch in enumerate(served):
        assert {owner[item] for item in batch} == {f"ann{k % 2}-{k // 2}"}, "what was returned is what was leased"


def test_a_live_lease_of_someone_else_is_never_taken_over(tmp_path):
    db = store.open_db(tmp_path / "labels.db")
    paths = resolve_paths(tmp_path)
    ids = add_items(paths, 3)
    assert labeling.lease(db, ids[:2], "ann") == set(ids[:2])
    assert labeling.lease(db, ids, "bob") == {ids[2]}, "only the free item"
    assert dict(db.execute("SELECT item_id, annotator FROM leases").fetchall()) == \
        {ids[0]: "ann", ids[1]: "ann", ids[2]: "bob"}
    assert labeling.lease(db, ids[:1], "ann") == {ids[0]}, "one's own lease is renewed"
    db.execute("UPDATE leases SET expires_at = ? WHERE item_id = ?", [time.time() - 1, ids[1]])
    assert labeling.lease(db, ids[1:2], "bob") == {ids[1]}, "an expired lease is free"


def _fetch_in_process(home: str, fmnist: str, annotator: str, rounds: int, barrier, queue) -> None:
    paths = resolve_paths(home, fmnist)
    got = []
    for round_ in range(rounds):   # the same seed for all in a round: they all want the same items
        barrier.wait()
        got += [e.item_id for e in labeling.next_items(paths, annotator=annotator, n=6, seed=round_,
                                                       holdout_share=0.0)]
    queue.put((annotator, got))


def test_fetches_from_separate_processes_share_no_item(tmp_path):
    """Two server processes on one labels.db (here before any model: the random queue)."""
    paths = resolve_paths(tmp_path / "home", tmp_path / "fmnist")
    add_items(paths, 200)
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_fetch_in_process,
                               args=(str(paths.home), str(paths.fmnist_dir), name, 10, barrier, queue))
               for name in ("ann", "bob", "cid")]
    for worker in workers:
        worker.start()
    results = dict(queue.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert all(len(got) == 60 for got in results.values())
    ann, bob, cid = (set(results[name]) for name in ("ann", "bob", "cid"))
    assert not (ann & bob or ann & cid or bob & cid), "no item served to two annotators"


# ---------------------------------------------------------------- conflicting decisions

def test_a_decision_on_an_item_leased_to_someone_else_is_refused(seeded_home):
    paths = seeded_home
    add_items(paths, 30)
    db = store.open_db(paths.db)
    ann = labeling.next_items(paths, annotator="ann", n=3, seed=0, holdout_share=0.0)
    with pytest.raises(store.DecisionConflict, match=f"item #{ann[0].item_id} is being labeled by ann"):
        labeling.decide(paths, annotator="bob", item_id=ann[0].item_id, action="skip")
    assert event_count(db) == 0
    ev = labeling.decide(paths, annotator="ann", item_id=ann[0].item_id, action="skip", entry=ann[0])
    assert db.execute("SELECT item_id, annotator FROM labels").fetchall() == [(ev.item_id, "ann")]


def test_a_decision_on_an_item_decided_by_someone_else_since_it_was_served_is_refused(seeded_home, monkeypatch):
    paths = seeded_home
    add_items(paths, 30)
    db = store.open_db(paths.db)
    ann = labeling.next_items(paths, annotator="ann", n=1, seed=0, holdout_share=0.0)[0]
    db.execute("UPDATE leases SET expires_at = ?", [time.time() - 1])      # ann went for a coffee
    bob = labeling.next_items(paths, annotator="bob", n=1, seed=0, holdout_share=0.0)[0]
    assert bob.item_id == ann.item_id, "the expired lease made the item free again"
    labeling.decide(paths, annotator="bob", item_id=bob.item_id, action="reject", entry=bob)
    with pytest.raises(store.DecisionConflict, match="was decided by bob after it was shown to you"):
        labeling.decide(paths, annotator="ann", item_id=ann.item_id, action="confirm", entry=ann)
    assert store.label_state(db)[ann.item_id] == ("reject", None), "bob's decision stands"
    assert event_count(db) == 1


def test_simultaneous_decisions_on_one_served_item_store_one(seeded_home):
    paths = seeded_home
    add_items(paths, 30)
    db = store.open_db(paths.db)
    ann = labeling.next_items(paths, annotator="ann", n=1, seed=0, holdout_share=0.0)[0]
    bob = replace(ann, serve_id="bob's stale tab")     # bob's screen shows it too, from before ann's lease
    results = in_threads(6, lambda k: labeling.decide(paths, annotator="bob" if k % 2 else "ann",
                                                      item_id=ann.item_id, action="skip",
                                                      entry=bob if k % 2 else ann))
    stored = db.execute("SELECT annotator FROM labels").fetchall()
    assert stored == [("ann",)], "ann's retries are one decision; bob's are refused"
    assert all(isinstance(r, store.DecisionConflict) for r in results[1::2])
    assert len({r.id for r in results[0::2]}) == 1


# ---------------------------------------------------------------- idempotent decisions

def test_a_retried_request_returns_the_stored_event(tmp_path):
    paths = resolve_paths(tmp_path)
    item = add_items(paths, 1)[0]
    db = store.open_db(paths.db)
    first = store.record_decision(db, item, "confirm", class_id=3, annotator="ann", request_id="req-1")
    again = store.record_decision(db, item, "confirm", class_id=3, annotator="ann", request_id="req-1")
    assert again == first and event_count(db) == 1
    racing = in_threads(8, lambda k: store.record_decision(store.open_db(paths.db), item, "skip",
                                                           annotator="ann", request_id="req-2"))
    assert len({r.id for r in racing}) == 1 and event_count(db) == 2
    assert db.execute("SELECT request_id FROM labels ORDER BY id").fetchall() == [("req-1",), ("req-2",)]
    store.record_label(db, item, "reject", annotator="ann")            # old callers: no id, stored each time
    store.record_label(db, item, "reject", annotator="ann")
    assert event_count(db) == 4


def test_deciding_a_served_entry_twice_stores_it_once_until_undo_serves_it_again(seeded_home):
    from activelearn.label_session import LabelSession
    paths = seeded_home
    add_items(paths, 30)
    db = store.open_db(paths.db)
    entry = labeling.next_items(paths, annotator="ann", n=1, seed=0, holdout_share=0.0)[0]
    first = labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="skip", entry=entry)
    retry = labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="skip", entry=entry)
    assert retry == first and event_count(db) == 1, "the client missed the answer and sent it again"
    store.undo(db, annotator="ann")
    session = LabelSession()
    session.bring_back(db, "ann", entry)
    again = labeling.decide(paths, annotator="ann", item_id=entry.item_id, action="reject", entry=session.current)
    assert again.id != first.id and store.label_state(db)[entry.item_id] == ("reject", None)


# ---------------------------------------------------------------- no model yet

def test_without_a_model_the_queue_serves_unlabeled_items_at_random(tmp_path, monkeypatch):
    paths = resolve_paths(tmp_path / "home", tmp_path / "fmnist")
    pool = add_items(paths, 200)
    holdout = set(add_items(paths, 100, start=5000, split="holdout"))
    db = store.open_db(paths.db)
    store.record_label(db, pool[0], "skip", annotator="x")
    assert registry.active_version(paths.models) is None
    ann = labeling.next_items(paths, annotator="ann", n=50, seed=1)
    bob = labeling.next_items(paths, annotator="bob", n=50, seed=1)
    got_a, got_b = [e.item_id for e in ann], [e.item_id for e in bob]
    assert len(set(got_a)) == 50 and not set(got_a) & set(got_b), "leases still keep annotators apart"
    assert pool[0] not in got_a + got_b
    assert got_a != sorted(got_a), "random order, not by id"
    assert sum(i in holdout for i in got_a) == 5, "the holdout share is served too"
    assert {e.strategy for e in ann} == {labeling.NO_MODEL} and all(e.top3 == () for e in ann)
    ev = labeling.decide(paths, annotator="ann", item_id=ann[0].item_id, action="confirm", class_id=4, entry=ann[0])
    assert (ev.action, ev.class_id) == ("confirm", 4)
    assert db.execute("SELECT model_version, predicted_class_id FROM labels WHERE id = ?", [ev.id]).fetchone() \
        == (None, None)
    with pytest.raises(store.StoreError, match="no model has predicted"):
        labeling.decide(paths, annotator="ann", item_id=ann[1].item_id, action="confirm", entry=ann[1])
    assert labeling.next_items(paths, annotator="ann", n=5, class_filter=2) == [], "no predictions to filter by"
    monkeypatch.setattr(labeling, "HOLDOUT_TARGET", 0)
    assert not {e.item_id for e in labeling.next_items(paths, annotator="cid", n=40, seed=2)} & holdout


def test_the_uncertainty_queue_takes_over_once_a_model_is_active(tmp_path, tiny_model, fmnist_dir):
    from activelearn.label_session import LabelSession
    paths = resolve_paths(tmp_path / "home", fmnist_dir)
    add_items(paths, 60)
    session = LabelSession()
    session.advance(paths, "ann")
    assert session.current.strategy == labeling.NO_MODEL and session.current.model_version is None
    model, card = tiny_model
    registry.register(paths.models, model, card, activate_now=True)
    session.advance(paths, "ann")
    assert session.current.model_version == "v1" and session.current.strategy != labeling.NO_MODEL
    assert all(e.model_version == "v1" for e in session.queue), "the random entries left the queue"


# ---------------------------------------------------------------- one workspace per request

def test_a_workspace_opens_labels_db_and_reads_active_once_per_request(seeded_home, monkeypatch):
    paths = seeded_home
    add_items(paths, 40)
    scoring.score_items(paths)
    ws = labeling.workspace(paths)
    opened, active_reads = [], []
    real_open, real_active = store.open_db, registry.active_version
    monkeypatch.setattr(store, "open_db", lambda path: opened.append(path) or real_open(path))
    monkeypatch.setattr(registry, "active_version", lambda models: active_reads.append(models) or real_active(models))
    batch = labeling.next_items(ws, annotator="ann", n=4, seed=0)
    labeling.decide(ws, annotator="ann", item_id=batch[0].item_id, action="skip", entry=batch[0])
    labeling.lookup(ws, batch[1].item_id)
    labeling.grid_page(ws, annotator="ann", class_id=batch[1].predicted_class_id, n=3)
    assert active_reads == [], "the version was read when the workspace was built"
    assert len(opened) <= 1, f"one connection at most (the score cache's), not one per call: {opened}"
