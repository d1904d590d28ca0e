"""Tests for activelearn.query: score functions, the strategy template, diversity, select_batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelearn.query import (
    STRATEGIES,
    DiverseBatch,
    Entropy,
    LeastConfidence,
    Margin,
    QueryItem,
    QueryStrategy,
    RandomSampling,
    audit_count,
    entropy,
    get_strategy,
    least_confidence,
    margin,
    select_batch,
    top_k_classes,
    top_n_indices,
)


def random_probas(rows: int, classes: int = 4, seed: int = 0) -> np.ndarray:
    """Softmax of random logits, float32 like a Keras model's output."""
    logits = np.random.default_rng(seed).normal(scale=2.0, size=(rows, classes))
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


# --- score functions -------------------------------------------------------------------------

HAND_MADE = np.array(
    [
        [0.70, 0.20, 0.10],  # confident
        [0.45, 0.44, 0.11],  # top two nearly tied: margin's pick
        [0.40, 0.30, 0.30],  # lowest max: least-confidence's pick
        [1 / 3, 1 / 3, 1 / 3],  # uniform: entropy's pick (and ties margin, LC)
        [1.00, 0.00, 0.00],  # certain
    ]
)


def test_margin_picks_row_whose_top_two_are_closest() -> None:
    probas = HAND_MADE[:3]
    indices, _ = Margin().query(probas, 1, rng=np.random.default_rng(0))
    assert indices.tolist() == [1]


def test_least_confidence_picks_row_with_lowest_max() -> None:
    probas = HAND_MADE[:3]
    indices, _ = LeastConfidence().query(probas, 1, rng=np.random.default_rng(0))
    assert indices.tolist() == [2]


def test_entropy_picks_uniform_row() -> None:
    indices, _ = Entropy().query(HAND_MADE, 1, rng=np.random.default_rng(0))
    assert indices.tolist() == [3]


def test_least_confidence_values() -> None:
    np.testing.assert_allclose(least_confidence(HAND_MADE), [0.30, 0.55, 0.60, 2 / 3, 0.0])


def test_margin_values() -> None:
    np.testing.assert_allclose(margin(HAND_MADE), [0.50, 0.99, 0.90, 1.0, 0.0])


def test_entropy_values_in_nats_and_zero_safe() -> None:
    expected_first = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    with np.errstate(all="raise"):  # log(0) must not even warn
        scores = entropy(HAND_MADE)
    assert scores[0] == pytest.approx(expected_first)
    assert expected_first == pytest.approx(0.8018, abs=1e-4)
    assert scores[3] == pytest.approx(math.log(3))
    assert scores[4] == 0.0


@pytest.mark.parametrize("score", [least_confidence, margin, entropy])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([0.5, 0.5]), "2-D"),
        (np.ones((2, 2, 2)) / 2, "2-D"),
        (np.array([[1.0], [1.0]]), "at least 2 class"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[np.inf, 0.0]]), "NaN or infinite"),
        (np.array([[1.2, -0.2]]), "negative"),
        (np.array([[0.5, 0.5], [0.6, 0.6]]), "row 1 sums to 1.2"),
    ],
)
def test_score_functions_reject_bad_input(score, bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        score(bad)


def test_float32_softmax_rows_are_accepted() -> None:
    probas = random_probas(1000, classes=10)
    assert least_confidence(probas).shape == (1000,)


def test_top_k_classes_best_first_with_ties_in_class_order() -> None:
    classes, probs = top_k_classes(HAND_MADE, k=3)
    assert classes[0].tolist() == [0, 1, 2]
    assert classes[2].tolist() == [0, 1, 2]  # 0.30 tie keeps class order
    np.testing.assert_allclose(probs[1], [0.45, 0.44, 0.11])
    classes, probs = top_k_classes(np.array([[0.1, 0.6, 0.3]]), k=5)
    assert classes.tolist() == [[1, 2, 0]]  # k larger than classes: all of them
    np.testing.assert_allclose(probs, [[0.6, 0.3, 0.1]])


def test_top_n_indices_exact_with_ties_to_lower_index() -> None:
    scores = np.array([0.2, 0.9, 0.5, 0.9, 0.5, 0.1])
    assert top_n_indices(scores, 3).tolist() == [1, 3, 2]
    assert top_n_indices(scores, 0).tolist() == []
    assert top_n_indices(scores, 10).tolist() == [1, 3, 2, 4, 0, 5]


# --- shared template: every registered strategy must pass -----------------------------------


@pytest.mark.parametrize("name", sorted(STRATEGIES))
class TestEveryStrategy:
    ROWS = 30

    @pytest.fixture
    def strategy(self, name: str) -> QueryStrategy:
        return STRATEGIES[name]

    @pytest.fixture
    def probas(self) -> np.ndarray:
        return random_probas(self.ROWS)

    @pytest.fixture
    def embeddings(self) -> np.ndarray:
        return np.random.default_rng(5).normal(size=(self.ROWS, 8))

    def test_registered_under_its_name_and_satisfies_protocol(
        self, name: str, strategy: QueryStrategy
    ) -> None:
        assert strategy.name == name
        assert isinstance(strategy, QueryStrategy)
        assert get_strategy(name) is strategy

    @pytest.mark.parametrize("use_embeddings", [False, True])
    @pytest.mark.parametrize("n", [1, 7, 30])
    def test_returns_n_unique_in_range_indices_with_scores(
        self, strategy, probas, embeddings, n: int, use_embeddings: bool
    ) -> None:
        indices, scores = strategy.query(
            probas,
            n,
            embeddings=embeddings if use_embeddings else None,
            rng=np.random.default_rng(0),
        )
        assert np.issubdtype(indices.dtype, np.integer)
        assert indices.shape == (n,)
        assert len(set(indices.tolist())) == n
        assert ((indices >= 0) & (indices < self.ROWS)).all()
        assert scores.shape == indices.shape

    def test_n_zero_returns_empty(self, strategy, probas, embeddings) -> None:
        indices, scores = strategy.query(
            probas, 0, embeddings=embeddings, rng=np.random.default_rng(0)
        )
        assert indices.shape == (0,) and scores.shape == (0,)

    def test_n_larger_than_rows_returns_every_row(self, strategy, probas, embeddings) -> None:
        indices, _ = strategy.query(
            probas, 100, embeddings=embeddings, rng=np.random.default_rng(0)
        )
        assert sorted(indices.tolist()) == list(range(self.ROWS))

    def test_empty_pool_returns_empty(self, strategy) -> None:
        indices, _ = strategy.query(np.empty((0, 4)), 5, rng=np.random.default_rng(0))
        assert indices.shape == (0,)

    def test_same_rng_seed_same_answer(self, strategy, probas, embeddings) -> None:
        first = strategy.query(probas, 9, embeddings=embeddings, rng=np.random.default_rng(42))
        second = strategy.query(probas, 9, embeddings=embeddings, rng=np.random.default_rng(42))
        np.testing.assert_array_equal(first[0], second[0])
        np.testing.assert_array_equal(first[1], second[1])

    @pytest.mark.parametrize(
        "bad", [np.full(4, 0.25), np.array([[0.5, 0.5], [np.nan, 0.5]])], ids=["1-D", "NaN"]
    )
    def test_rejects_bad_probas(self, strategy, bad: np.ndarray) -> None:
        with pytest.raises(ValueError):
            strategy.query(bad, 1, rng=np.random.default_rng(0))

    def test_rejects_negative_n_and_misaligned_embeddings(self, strategy, probas) -> None:
        with pytest.raises(ValueError, match="n must be"):
            strategy.query(probas, -1, rng=np.random.default_rng(0))
        with pytest.raises(ValueError, match="embeddings"):
            strategy.query(
                probas, 3, embeddings=np.zeros((self.ROWS - 1, 8)), rng=np.random.default_rng(0)
            )


# --- strategy specifics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "score"),
    [(LeastConfidence(), least_confidence), (Margin(), margin), (Entropy(), entropy)],
)
def test_score_strategies_return_true_top_n_best_first(strategy, score) -> None:
    probas = random_probas(500, classes=10, seed=3)
    indices, scores = strategy.query(probas, 25, rng=np.random.default_rng(0))
    expected = np.argsort(-score(probas), kind="stable")[:25]
    assert indices.tolist() == expected.tolist()
    np.testing.assert_allclose(scores, score(probas)[indices])
    assert (np.diff(scores) <= 0).all()


def test_random_sampling_reaches_every_row_and_depends_on_rng() -> None:
    probas = random_probas(6)
    picked = {
        int(RandomSampling().query(probas, 1, rng=np.random.default_rng(seed))[0][0])
        for seed in range(200)
    }
    assert picked == set(range(6))
    _, scores = RandomSampling().query(probas, 6, rng=np.random.default_rng(0))
    assert ((scores >= 0) & (scores < 1)).all()


def duplicate_heavy_pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """50 identical, maximally uncertain rows plus 150 slightly surer rows spread in space."""
    rng = np.random.default_rng(7)
    duplicates, spread = 50, 150
    gaps = np.concatenate([np.zeros(duplicates), rng.uniform(0.05, 0.10, spread)])
    probas = np.zeros((duplicates + spread, 3))
    probas[:, 0] = (1 + gaps) / 2
    probas[:, 1] = (1 - gaps) / 2
    order = rng.permutation(duplicates + spread)
    probas = probas[order]
    is_duplicate = order < duplicates
    embeddings = rng.normal(size=(duplicates + spread, 16))
    embeddings[is_duplicate] = embeddings[is_duplicate][0]
    return probas, embeddings, is_duplicate


def test_diverse_batch_avoids_duplicates_that_margin_takes() -> None:
    probas, embeddings, is_duplicate = duplicate_heavy_pool()
    rng = np.random.default_rng(0)
    by_margin, _ = Margin().query(probas, 10, embeddings=embeddings, rng=rng)
    diverse, _ = DiverseBatch().query(probas, 10, embeddings=embeddings, rng=rng)
    assert is_duplicate[by_margin].sum() == 10
    assert is_duplicate[diverse].sum() == 1
    assert is_duplicate[diverse[0]]  # starts from the most uncertain


def test_k_center_takes_farthest_direction_after_normalising() -> None:
    probas = np.array([[0.5, 0.5], [0.55, 0.45], [0.6, 0.4], [0.9, 0.1]])  # most uncertain first
    # row 1 points the way row 0 does (only longer); row 2 is at 135 degrees; row 3 is opposite.
    # Unnormalised, row 2's length would make it look farthest from row 0.
    embeddings = np.array([[1.0, 0.0], [100.0, 0.0], [-10.0, 10.0], [-1.0, 0.0]])
    narrow = DiverseBatch(oversample=1)  # k = n: only the top-2 margin rows are candidates
    indices, _ = narrow.query(probas, 2, embeddings=embeddings, rng=np.random.default_rng(0))
    assert indices.tolist() == [0, 1]
    wide = DiverseBatch(oversample=2)
    indices, scores = wide.query(probas, 4, embeddings=embeddings, rng=np.random.default_rng(0))
    assert indices.tolist() == [0, 3, 2, 1]
    np.testing.assert_allclose(scores, margin(probas)[[0, 3, 2, 1]])


def test_diverse_without_embeddings_is_margin() -> None:
    probas = random_probas(300, seed=9)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(
        DiverseBatch().query(probas, 12, rng=rng)[0], Margin().query(probas, 12, rng=rng)[0]
    )


def test_diverse_rejects_bad_oversample_and_nonfinite_embeddings() -> None:
    with pytest.raises(ValueError, match="oversample"):
        DiverseBatch(oversample=0)
    probas = random_probas(10)
    embeddings = np.ones((10, 3))
    embeddings[:, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings"):
        DiverseBatch().query(probas, 2, embeddings=embeddings, rng=np.random.default_rng(0))


def test_get_strategy_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="least-confidence, margin, entropy, random, diverse"):
        get_strategy("bald")


# --- select_batch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "fraction", "expected"),
    [
        (20, 0.1, 2),
        (25, 0.1, 3),  # 2.5 rounds half up
        (5, 0.1, 1),  # 0.5 rounds half up
        (2, 0.1, 1),  # at least one audit in any batch of 2+
        (1, 0.1, 0),
        (1, 0.5, 1),
        (10, 0.0, 0),
        (4, 1.0, 4),
        (0, 0.5, 0),
    ],
)
def test_audit_count_rule(batch_size: int, fraction: float, expected: int) -> None:
    assert audit_count(batch_size, fraction) == expected


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_audit_count_rejects_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="audit_fraction"):
        audit_count(10, fraction)


def test_select_batch_never_returns_ineligible_rows() -> None:
    probas = random_probas(100, seed=2)
    most_uncertain = Margin().query(probas, 10, rng=np.random.default_rng(0))[0]
    eligible = np.ones(100, dtype=bool)
    eligible[most_uncertain] = False
    eligible[::7] = False
    for strategy in STRATEGIES:
        batch = select_batch(probas, 20, strategy, eligible=eligible, seed=1)
        assert len(batch) == 20
        assert all(eligible[item.index] for item in batch)
    everything = select_batch(probas, 1000, eligible=eligible)
    assert sorted(item.index for item in everything) == np.flatnonzero(eligible).tolist()


def test_select_batch_audit_slice_and_strategy_rows() -> None:
    probas = random_probas(200, seed=4)
    eligible = np.arange(200) % 3 != 0
    batch = select_batch(probas, 20, "margin", eligible=eligible, audit_fraction=0.1, seed=3)

    assert all(isinstance(item, QueryItem) for item in batch)
    indices = [item.index for item in batch]
    assert len(batch) == 20 and len(set(indices)) == 20
    audits = [item for item in batch if item.is_audit]
    assert len(audits) == 2 and all(item.strategy == "audit" for item in audits)
    chosen = [item for item in batch if not item.is_audit]
    assert all(item.strategy == "margin" for item in chosen)
    # audits are spread through the batch, not parked at the end
    audit_positions = [position for position, item in enumerate(batch) if item.is_audit]
    assert audit_positions[0] < 10 <= audit_positions[1]
    # the rest are the 18 highest-margin eligible rows once the audit rows are taken out
    remaining = eligible.copy()
    remaining[[item.index for item in audits]] = False
    scores = np.where(remaining, margin(probas), -np.inf)
    assert [item.index for item in chosen] == top_n_indices(scores, 18).tolist()
    chosen_rows = [item.index for item in chosen]
    np.testing.assert_allclose([item.score for item in chosen], margin(probas)[chosen_rows])


def test_select_batch_top3_matches_probabilities() -> None:
    probas = random_probas(50, classes=10, seed=6)
    for item in select_batch(probas, 8, "entropy"):
        classes = [cls for cls, _ in item.top3]
        probs = [p for _, p in item.top3]
        assert len(item.top3) == 3
        assert probs == sorted(probs, reverse=True)
        assert classes == np.argsort(-probas[item.index])[:3].tolist()
        np.testing.assert_allclose(probs, probas[item.index][classes])
        assert all(isinstance(cls, int) and isinstance(p, float) for cls, p in item.top3)


def test_select_batch_without_audit_is_the_strategy() -> None:
    probas = random_probas(120, seed=8)
    embeddings = np.random.default_rng(0).normal(size=(120, 8))
    batch = select_batch(probas, 10, "diverse", embeddings=embeddings, audit_fraction=0)
    assert not any(item.is_audit for item in batch)
    expected, _ = DiverseBatch().query(
        probas, 10, embeddings=embeddings, rng=np.random.default_rng(0)
    )
    assert [item.index for item in batch] == expected.tolist()


def test_select_batch_seed_controls_audit_draw() -> None:
    probas = random_probas(500, seed=10)
    first = select_batch(probas, 20, seed=11)
    assert select_batch(probas, 20, seed=11) == first
    assert {i.index for i in select_batch(probas, 20, seed=12) if i.is_audit} != {
        i.index for i in first if i.is_audit
    }
    assert len(select_batch(probas, 20, seed=None)) == 20


def test_select_batch_edge_cases_and_bad_arguments() -> None:
    probas = random_probas(10)
    assert select_batch(probas, 0) == []
    assert select_batch(probas, 5, eligible=np.zeros(10, dtype=bool)) == []
    with pytest.raises(ValueError, match="boolean mask"):
        select_batch(probas, 5, eligible=np.ones(10, dtype=int))
    with pytest.raises(ValueError, match="boolean mask"):
        select_batch(probas, 5, eligible=np.ones(9, dtype=bool))
    with pytest.raises(ValueError, match="unknown query strategy"):
        select_batch(probas, 5, "nope")
    with pytest.raises(ValueError, match="embeddings"):
        select_batch(probas, 5, "diverse", embeddings=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2-D"):
        select_batch(probas[0], 5)
