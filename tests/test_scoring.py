import numpy as np

from activelearn import scoring
from activelearn.errors import ModelError
from tests.helpers import add_items


def test_scores_are_cached_per_version_and_only_new_items_are_scored(seeded_home):
    paths = seeded_home
    ids = add_items(paths, 30)
    first = scoring.score_items(paths)
    assert first.version == "v1" and list(first.item_ids) == ids
    assert first.probs.shape == (30, 10) and first.embeddings.shape == (30, 256)
    assert scoring.cache_path(paths, "v1").exists()
    # Forget the in-process copies and remove the model: cached scores still serve...
    scoring._memo.clear()
    scoring._models.clear()
    (paths.models / "v1" / "model.keras").rename(paths.models / "v1" / "moved.keras")
    again = scoring.score_items(paths)
    np.testing.assert_array_equal(again.probs, first.probs)
    # ...but a new item needs the model, proving only new items are scored.
    add_items(paths, 1, start=100)
    try:
        scoring.score_items(paths)
        raise AssertionError("scoring a new item without a model should fail")
    except ModelError:
        pass
    (paths.models / "v1" / "moved.keras").rename(paths.models / "v1" / "model.keras")
    grown = scoring.score_items(paths)
    assert len(grown.item_ids) == 31
    np.testing.assert_allclose(grown.probs[:30], first.probs, atol=1e-6)
    assert grown.rows([ids[5]])[0] == 5
