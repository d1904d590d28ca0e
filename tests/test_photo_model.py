"""The photo model on data made in the test: stored embeddings, the head, holdout parts, activation."""

import numpy as np
import pytest

from activelearn import holdout, registry, scoring, store
from activelearn.config import resolve_paths
from activelearn.errors import JobError
from tests.helpers import add_items

DIM = 16
BACKBONE = "mobilenet_v1_0.25"


def clustered(n_per_class: int, classes: int, seed: int, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings around one random centre per class: a task a linear head can learn."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 1, (classes, DIM))
    y = np.repeat(np.arange(classes), n_per_class)
    return (centres[y] + rng.normal(0, spread, (len(y), DIM))).astype(np.float32), y


@pytest.fixture
def photo_home(tmp_path):
    """A home with 3-class items whose backbone embeddings are already stored (no weights needed)."""
    paths = resolve_paths(tmp_path / "home", tmp_path / "no-fmnist")
    pool = add_items(paths, 90)
    hold = add_items(paths, 120, start=1000, split="holdout")
    x_pool, y_pool = clustered(30, 3, seed=1)
    x_hold, y_hold = clustered(40, 3, seed=2)
    db = store.open_db(paths.db)
    store.put_embeddings(db, BACKBONE, pool + hold, np.concatenate([x_pool, x_hold]))
    return paths, pool, y_pool, hold, y_hold


def label(paths, ids, classes):
    db = store.open_db(paths.db)
    for item, cls in zip(ids, classes):
        store.record_label(db, item, "correct", class_id=int(cls), annotator="t")


def test_embeddings_round_trip_as_float16_and_missing_items_are_listed(tmp_path):
    paths = resolve_paths(tmp_path)
    ids = add_items(paths, 5)
    db = store.open_db(paths.db)
    vectors = np.random.default_rng(0).normal(0, 1, (3, 8)).astype(np.float32)
    store.put_embeddings(db, "b", ids[:3], vectors)
    got_ids, got = store.get_embeddings(db, "b")
    assert got_ids.tolist() == ids[:3]
    np.testing.assert_allclose(got, vectors, atol=2e-3)       # float16 precision
    assert [i for i, _ in store.items_without_embedding(db, "b")] == ids[3:]
    assert store.embedded_backbones(db) == {"b": 3}
    store.put_embeddings(db, "b", ids[:1], vectors[1:2])       # replaced, not duplicated
    assert store.embedded_backbones(db) == {"b": 3}
    with pytest.raises(Exception, match="3 embeddings"):
        store.put_embeddings(db, "b", ids[:2], vectors)


def test_settings_are_json_values(tmp_path):
    db = store.open_db(resolve_paths(tmp_path).db)
    assert store.get_setting(db, "auto", {"on": True}) == {"on": True}
    store.set_setting(db, "auto", {"on": False, "every": 50})
    store.set_setting(db, "auto", {"on": False, "every": 25})
    assert store.get_setting(db, "auto") == {"on": False, "every": 25}


def test_holdout_parts_are_disjoint_stable_and_cover_the_holdout(photo_home):
    paths, _, _, hold, y_hold = photo_home
    label(paths, hold, y_hold)
    db = store.open_db(paths.db)
    selection, report = store.labeled_holdout(db, "selection"), store.labeled_holdout(db, "report")
    assert len(selection) + len(report) == len(hold)
    assert not {i for i, _ in selection} & {i for i, _ in report}
    assert 30 < len(selection) < 90                  # a hash split, roughly half
    assert store.labeled_holdout(db, "selection") == selection


def test_linear_head_learns_separable_embeddings_and_never_predicts_unlabeled_classes():
    from activelearn.photo import HeadConfig, predict_head, train_head
    x, y = clustered(40, 3, seed=3)
    x_test, y_test = clustered(40, 3, seed=4)
    head, history = train_head(x, y, num_classes=5, config=HeadConfig())
    probs = predict_head(head, x_test)
    assert probs.shape == (120, 5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y_test).mean() > 0.9
    assert probs[:, 3:].max() < 1e-6                 # classes 3 and 4 have no labels
    binary, _ = train_head(x[y < 2], y[y < 2], num_classes=3, config=HeadConfig())
    assert (predict_head(binary, x_test[y_test < 2]).argmax(1) == y_test[y_test < 2]).mean() > 0.9
    with pytest.raises(JobError, match="2 classes"):
        train_head(x[y == 0], y[y == 0], num_classes=3, config=HeadConfig())


def test_hidden_head_trains_with_progress_and_cancel():
    from activelearn.photo import HeadConfig, train_head
    x, y = clustered(30, 3, seed=5)
    updates = []
    head, history = train_head(x, y, 3, HeadConfig(hidden=32, min_steps=200, max_steps=200),
                               progress=lambda u: updates.append(u) or len(updates) >= 2)
    assert len(history) == 2 and updates[-1]["phase"] == "epoch-end"


def test_photo_retrain_registers_a_photo_version_with_both_holdout_parts(photo_home):
    from activelearn.retrain import retrain_and_register
    paths, pool, y_pool, hold, y_hold = photo_home
    label(paths, pool, y_pool)
    label(paths, hold, y_hold)
    outcome = retrain_and_register(paths, {"mode": "photo"})
    assert outcome.version == "v1" and outcome.activated
    card = registry.read_card(paths.models, "v1")
    assert card["kind"] == "photo" and card["backbone"]["name"] == BACKBONE
    assert card["backbone"]["input_size"] == 224
    assert card["human_labels_used"] == {"train": 90, "holdout": 120}
    tried = card["training_data"]["validation"]["head_candidates"]
    assert [t["hidden"] for t in tried] == [0, 256]            # the selection part is big enough to choose
    assert card["hyperparameters"]["hidden"] in (0, 256)
    assert card["metrics"]["holdout"]["n"] + card["metrics"]["holdout_selection"]["n"] == 120
    assert card["metrics"]["holdout"]["accuracy"] > 0.85
    # scoring runs the head over the stored embeddings; the queue sees the backbone embeddings
    scores = scoring.score_items(paths)
    assert scores.probs.shape == (210, 10) and scores.embeddings.shape == (210, DIM)
    # evaluate: kind and metrics for any version, computed now
    report = holdout.report(paths, "v1")
    assert report["kind"] == "photo" and report["holdout"]["accuracy"] == card["metrics"]["holdout"]["accuracy"]
    assert report["fmnist_test"]["n"] == 0


def test_photo_retrain_without_two_labeled_classes_is_a_clear_error(photo_home):
    from activelearn.retrain import retrain_and_register
    paths, pool, y_pool, _, _ = photo_home
    label(paths, pool[:5], [0] * 5)
    with pytest.raises(JobError, match="at least 2 classes"):
        retrain_and_register(paths, {"mode": "photo"})
    assert registry.list_versions(paths.models) == []


def test_activation_uses_the_selection_part_with_a_tolerance_and_never_the_report_part(photo_home):
    from activelearn.retrain import retrain_and_register
    paths, pool, y_pool, hold, y_hold = photo_home
    label(paths, pool, y_pool)
    label(paths, hold, y_hold)
    assert retrain_and_register(paths, {"mode": "photo"}).activated      # v1
    db = store.open_db(paths.db)
    selection = holdout.holdout_set(db, "selection")
    good = holdout.metrics(paths, "v1", "holdout_selection")
    slightly_worse = {"holdout_selection": {**good, "accuracy": good["accuracy"] - 0.005}}
    assert holdout.activation_decision(paths, "v1", slightly_worse)["activated"]
    much_worse = {"holdout_selection": {**good, "accuracy": good["accuracy"] - 0.05},
                  "holdout": {"accuracy": 1.0, "n": 60}}          # a perfect report part changes nothing
    decision = holdout.activation_decision(paths, "v1", much_worse)
    assert not decision["activated"] and decision["basis"] == "holdout_selection"
    assert f"on {len(selection)} items" in decision["reason"]
    assert holdout.activation_decision(paths, "v1", much_worse, force=True)["activated"]


def test_a_photo_model_replaces_a_cnn_only_with_holdout_evidence(photo_home):
    paths, *_ = photo_home
    cnn_card = {"kind": "cnn", "metrics": {"fmnist_test": {"accuracy": 0.93}}}
    (paths.models / "v1").mkdir(parents=True)
    (paths.models / "v1" / "card.json").write_text(__import__("json").dumps(cnn_card))
    decision = holdout.activation_decision(paths, "v1", {"holdout_selection": {"n": 3, "accuracy": 1.0}})
    assert not decision["activated"] and "label at least" in decision["reason"]


def test_one_malformed_card_does_not_empty_the_versions_list(photo_home):
    from activelearn.retrain import retrain_and_register
    paths, pool, y_pool, _, _ = photo_home
    label(paths, pool, y_pool)
    retrain_and_register(paths, {"mode": "photo"})
    (paths.models / "v2").mkdir()
    (paths.models / "v2" / "card.json").write_text('{"version": "v2"}')       # valid JSON, keys missing
    (paths.models / "v3").mkdir()
    (paths.models / "v3" / "card.json").write_text("{not json")
    rows = registry.version_summaries(paths.models)
    assert [r["version"] for r in rows] == ["v1", "v2", "v3"]
    assert "error" not in rows[0] and rows[0]["kind"] == "photo"
    assert "metrics" in rows[1]["error"] and "corrupt" in rows[2]["error"]


def test_scoring_keeps_only_the_two_most_recent_versions_in_memory(photo_home):
    from activelearn.retrain import retrain_and_register
    paths, pool, y_pool, _, _ = photo_home
    label(paths, pool, y_pool)
    for _ in range(3):
        retrain_and_register(paths, {"mode": "photo", "force_activate": True})
    scoring._memo.clear()
    scoring._models.clear()
    for version in ("v1", "v2", "v3", "v1"):
        scoring.score_items(paths, version)
    assert [v for _, v in scoring._memo] == ["v3", "v1"]
    assert [v for _, v in scoring._models] == ["v2", "v3"]   # v1 came back from its cache file: no model needed


@pytest.mark.slow
def test_every_n_decisions_a_photo_model_trains_by_itself(photo_home):
    from activelearn import autotrain, jobs, labeling
    paths, pool, y_pool, hold, y_hold = photo_home
    db = store.open_db(paths.db)
    assert autotrain.settings(db) == {"enabled": True, "every": 50}
    autotrain.configure(db, enabled=True, every=10)
    order = np.random.default_rng(0).permutation(len(pool))
    pool, y_pool = [pool[i] for i in order], y_pool[order]
    for item, cls in zip(pool[:9], y_pool[:9]):
        labeling.decide(paths, annotator="ann", item_id=item, action="correct", class_id=int(cls))
    assert jobs.active_job(db) is None and not jobs.list_jobs(db)          # 9 < 10: nothing yet
    labeling.decide(paths, annotator="ann", item_id=pool[9], action="correct", class_id=int(y_pool[9]))
    job = jobs.active_job(db)
    assert job is not None and job.params["mode"] == "photo" and job.params["trigger"] == "auto"
    done = jobs.wait(db, job.id, timeout_s=120)
    assert done.status == "succeeded", done.message
    assert registry.model_kind(registry.read_card(paths.models, done.version)) == "photo"
    assert autotrain.labels_since_photo_model(paths, db)[0] == 0
    autotrain.configure(db, enabled=False, every=10)
    for item, cls in zip(pool[10:30], y_pool[10:30]):
        labeling.decide(paths, annotator="ann", item_id=item, action="correct", class_id=int(cls))
    assert len(jobs.list_jobs(db)) == 1                                    # switched off: no new job


@pytest.mark.slow
def test_a_failed_automatic_job_is_not_retried_on_every_decision(photo_home):
    from activelearn import autotrain, jobs, labeling
    paths, pool, *_ = photo_home
    db = store.open_db(paths.db)
    autotrain.configure(db, enabled=True, every=5)
    for item in pool[:5]:                                                  # one class only: the job fails
        labeling.decide(paths, annotator="ann", item_id=item, action="correct", class_id=0)
    first = jobs.wait(db, jobs.list_jobs(db)[0].id, timeout_s=120)
    assert first.status == "failed" and "2 classes" in first.message
    for item in pool[5:9]:
        labeling.decide(paths, annotator="ann", item_id=item, action="correct", class_id=1)
    assert len(jobs.list_jobs(db)) == 1
    labeling.decide(paths, annotator="ann", item_id=pool[9], action="correct", class_id=1)
    assert len(jobs.list_jobs(db)) == 2                                    # 5 more labels: tried again
    assert jobs.wait(db, jobs.list_jobs(db)[0].id, timeout_s=120).status == "succeeded"
