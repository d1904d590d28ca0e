"""Active-learning query strategies: which unlabeled rows are most worth an annotator's time.

Framework-free (numpy only) so the app, the CLI and the simulation benchmark share one
implementation and it can be tested on hand-made arrays. Score functions are pure
(``probas -> scores``, higher = more worth labeling); strategies are small objects with one
``query`` method; :func:`select_batch` composes a strategy with a random *audit slice* and the
caller's eligibility mask into the batch the UI shows.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

#: How far a row of probabilities may stray from summing to 1 (float32 softmax output is fine).
ROW_SUM_TOLERANCE = 1e-3


def validate_probas(probas: np.ndarray) -> np.ndarray:
    """Return ``probas`` as a float64 array, or raise ValueError saying what is wrong with it.

    Rows are samples, columns classes; at least two classes so that a margin exists.
    """
    array = np.asarray(probas, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"probas must be 2-D (rows x classes), got shape {array.shape}")
    if array.shape[1] < 2:
        raise ValueError(f"probas needs at least 2 class columns, got {array.shape[1]}")
    if not np.isfinite(array).all():
        raise ValueError("probas contains NaN or infinite values")
    if (array < 0).any():
        raise ValueError("probas contains negative values")
    row_sums = array.sum(axis=1)
    off = np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"probas rows must sum to 1 (±{ROW_SUM_TOLERANCE}); "
            f"row {row} sums to {row_sums[row]:.6g}"
        )
    return array


def least_confidence(probas: np.ndarray) -> np.ndarray:
    """1 - max probability: how far the model is from being sure of its top guess."""
    return _least_confidence(validate_probas(probas))


def margin(probas: np.ndarray) -> np.ndarray:
    """1 - (p1 - p2) over the two highest probabilities: near 1 when two classes are tied."""
    return _margin(validate_probas(probas))


def entropy(probas: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats; zero probabilities contribute 0 (the limit of p log p)."""
    return _entropy(validate_probas(probas))


# Unchecked forms for strategies, which validate once in _check_query_args.
def _least_confidence(array: np.ndarray) -> np.ndarray:
    return 1.0 - array.max(axis=1)


def _margin(array: np.ndarray) -> np.ndarray:
    top_two = np.partition(array, -2, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])


def _entropy(array: np.ndarray) -> np.ndarray:
    logs = np.log(np.where(array > 0, array, 1.0))
    return -(array * logs).sum(axis=1)


def top_k_classes(probas: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable classes per row, best first: (class indices, probabilities).

    Both arrays have shape (rows, min(k, classes)); equal probabilities keep class order.
    """
    array = validate_probas(probas)
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(-array, axis=1, kind="stable")[:, : min(k, array.shape[1])]
    return order, np.take_along_axis(array, order, axis=1)


def top_n_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores, best first; ties go to the lower index.

    Uses argpartition (linear) rather than a full sort so that picking 20 rows out of
    100,000 costs one pass; the exact tie rule makes results independent of partition order.
    """
    n = min(n, scores.shape[0])
    if n == 0:
        return np.empty(0, dtype=np.intp)
    candidates = np.argpartition(-scores, n - 1)[:n]
    cutoff = scores[candidates].min()
    above = np.flatnonzero(scores > cutoff)
    at_cutoff = np.flatnonzero(scores == cutoff)[: n - above.shape[0]]
    chosen = np.concatenate([above, at_cutoff])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


def _check_query_args(
    probas: np.ndarray, n: int, embeddings: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """Validate what every strategy receives; returns (float64 probas, n as int)."""
    array = validate_probas(probas)
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if embeddings is not None:
        shape = np.shape(embeddings)
        if len(shape) != 2 or shape[0] != array.shape[0]:
            raise ValueError(
                f"embeddings must be 2-D with one row per probas row ({array.shape[0]}), "
                f"got shape {shape}"
            )
    return array, n


@runtime_checkable
class QueryStrategy(Protocol):
    """Picks the rows most worth labeling.

    ``query`` returns (indices into the rows given, their scores): indices unique, best first,
    ``min(n, rows)`` of them. ``embeddings`` (one row per probas row) may be ignored;
    ``rng`` is the only source of randomness, so equal generators give equal answers.
    """

    name: str

    def query(
        self,
        probas: np.ndarray,
        n: int,
        *,
        embeddings: np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]: ...


class _ScoreStrategy:
    """A strategy that ranks rows by one uncertainty score function."""

    name: str
    score: Callable[[np.ndarray], np.ndarray]  # unchecked score function, set by subclasses

    def query(
        self,
        probas: np.ndarray,
        n: int,
        *,
        embeddings: np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        array, n = _check_query_args(probas, n, embeddings)
        scores = self.score(array)
        indices = top_n_indices(scores, n)
        return indices, scores[indices]


class LeastConfidence(_ScoreStrategy):
    """Rows whose top class has the lowest probability."""

    name = "least-confidence"
    score = staticmethod(_least_confidence)


class Margin(_ScoreStrategy):
    """Rows whose two best classes are closest: the usual best single-score baseline."""

    name = "margin"
    score = staticmethod(_margin)


class Entropy(_ScoreStrategy):
    """Rows whose whole distribution is flattest."""

    name = "entropy"
    score = staticmethod(_entropy)


class RandomSampling:
    """Uniform sample without replacement: the baseline every strategy must beat.

    Each row gets a uniform draw in [0, 1) from ``rng``; the rows with the highest draws are
    returned, and the draw is reported as their score (so scores are never NaN).
    """

    name = "random"

    def query(
        self,
        probas: np.ndarray,
        n: int,
        *,
        embeddings: np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        array, n = _check_query_args(probas, n, embeddings)
        draws = rng.random(array.shape[0])
        indices = top_n_indices(draws, n)
        return indices, draws[indices]


class DiverseBatch:
    """Uncertain *and* varied rows, so a batch is not n copies of the same confusing picture.

    Takes the ``k = max(n * oversample, n)`` rows with the highest margin score, then picks n of
    them by k-center greedy over L2-normalised embeddings: start from the most uncertain, then
    repeatedly add the candidate farthest from everything already picked (ties go to the more
    uncertain). Indices come back in pick order; scores are their margin scores. Without
    embeddings it is plain margin.
    """

    name = "diverse"

    def __init__(self, oversample: int = 10) -> None:
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        self.oversample = oversample

    def query(
        self,
        probas: np.ndarray,
        n: int,
        *,
        embeddings: np.ndarray | None = None,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        array, n = _check_query_args(probas, n, embeddings)
        scores = _margin(array)
        candidates = top_n_indices(scores, max(n * self.oversample, n))
        if embeddings is None or n == 0:
            picked = candidates[:n]
            return picked, scores[picked]
        vectors = np.asarray(embeddings)[candidates].astype(np.float32, copy=False)
        if not np.isfinite(vectors).all():
            raise ValueError("embeddings contains NaN or infinite values")
        picked_positions = _k_center_greedy(vectors, n)
        picked = candidates[picked_positions]
        return picked, scores[picked]


def _k_center_greedy(vectors: np.ndarray, n: int) -> np.ndarray:
    """Positions of n rows of ``vectors``, each the farthest from those picked before it.

    Starts at row 0; rows are L2-normalised first, so squared distance is 2 - 2 cos and one
    matrix-vector product per pick keeps every row's distance to its nearest pick current.
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, np.float32(1e-12))
    n = min(n, unit.shape[0])
    picks = np.empty(n, dtype=np.intp)
    nearest = np.full(unit.shape[0], np.inf, dtype=np.float32)
    current = 0
    for step in range(n):
        picks[step] = current
        # einsum rather than @: a threaded BLAS matvec this small slows ~10x when the cores
        # are busy (a training job beside the app); einsum's single-threaded loop does not.
        distance = 2.0 - 2.0 * np.einsum("ij,j->i", unit, unit[current])
        np.minimum(nearest, distance, out=nearest)
        nearest[current] = -np.inf  # never pick a row twice, even when all distances are 0
        current = int(np.argmax(nearest))
    return picks


#: Strategies by CLI name.
STRATEGIES: dict[str, QueryStrategy] = {
    strategy.name: strategy
    for strategy in (LeastConfidence(), Margin(), Entropy(), RandomSampling(), DiverseBatch())
}


def get_strategy(name: str) -> QueryStrategy:
    """The strategy registered under ``name``; ValueError lists the valid names."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown query strategy {name!r}; choose one of: {', '.join(STRATEGIES)}"
        ) from None


@dataclass(frozen=True)
class QueryItem:
    """One row proposed for labeling, as the UI and CLI show it."""

    index: int  # row in the probas given to select_batch
    score: float  # the strategy's score; for audit items the uniform draw that chose them
    strategy: str  # strategy name, or "audit"
    is_audit: bool
    top3: tuple[tuple[int, float], ...]  # (class index, probability), best first


def audit_count(batch_size: int, audit_fraction: float) -> int:
    """How many of ``batch_size`` items form the random audit slice.

    ``batch_size * audit_fraction`` rounded half up, but at least 1 whenever the fraction is
    positive and the batch has 2 or more items, so every real batch measures the model on rows
    the strategy did not choose. A 1-item batch is audit only if the fraction is >= 0.5.
    """
    if not 0.0 <= audit_fraction <= 1.0:
        raise ValueError(f"audit_fraction must be between 0 and 1, got {audit_fraction}")
    count = math.floor(batch_size * audit_fraction + 0.5)
    if audit_fraction > 0 and batch_size >= 2:
        count = max(count, 1)
    return min(count, batch_size)


def select_batch(
    probas: np.ndarray,
    n: int,
    strategy: str = "margin",
    *,
    embeddings: np.ndarray | None = None,
    eligible: np.ndarray | None = None,
    audit_fraction: float = 0.1,
    seed: int | None = 0,
) -> list[QueryItem]:
    """The next batch to label: ``min(n, eligible rows)`` distinct rows of ``probas``.

    The audit slice (:func:`audit_count` items) is drawn uniformly from the eligible rows first;
    the strategy then picks the rest from the eligible rows left. Rows where ``eligible`` is
    False (holdout, labeled, skipped, rejected) are never returned. Strategy items come best
    first with audit items spread evenly among them, so a batch abandoned part-way still
    holds its share of audits. Same inputs and seed give the same batch.
    """
    array = validate_probas(probas)
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    chooser = get_strategy(strategy)
    rows = array.shape[0]
    if eligible is None:
        eligible_mask = np.ones(rows, dtype=bool)
    else:
        eligible_mask = np.asarray(eligible)
        if eligible_mask.dtype != bool or eligible_mask.shape != (rows,):
            raise ValueError(
                f"eligible must be a boolean mask of shape ({rows},), "
                f"got {eligible_mask.dtype} {eligible_mask.shape}"
            )
    if embeddings is not None and np.shape(embeddings)[:1] != (rows,):
        raise ValueError(
            f"embeddings must have one row per probas row ({rows}), "
            f"got shape {np.shape(embeddings)}"
        )

    rng = np.random.default_rng(seed)
    eligible_rows = np.flatnonzero(eligible_mask)
    batch_size = min(n, eligible_rows.shape[0])
    n_audit = audit_count(batch_size, audit_fraction)

    audit_pos, audit_scores = RandomSampling().query(array[eligible_rows], n_audit, rng=rng)
    audit_rows = eligible_rows[audit_pos]
    remaining_mask = eligible_mask.copy()
    remaining_mask[audit_rows] = False
    remaining_rows = np.flatnonzero(remaining_mask)
    strategy_pos, strategy_scores = chooser.query(
        array[remaining_rows],
        batch_size - n_audit,
        embeddings=None if embeddings is None else np.asarray(embeddings)[remaining_rows],
        rng=rng,
    )
    strategy_rows = remaining_rows[strategy_pos]

    chosen_rows = np.concatenate([strategy_rows, audit_rows])
    classes, probs = top_k_classes(array[chosen_rows], k=3)

    def item(position: int, score: float, name: str, is_audit: bool) -> QueryItem:
        return QueryItem(
            index=int(chosen_rows[position]),
            score=float(score),
            strategy=name,
            is_audit=is_audit,
            top3=tuple(zip(classes[position].tolist(), probs[position].tolist())),
        )

    strategy_items = [item(i, s, chooser.name, False) for i, s in enumerate(strategy_scores)]
    audit_items = [
        item(len(strategy_rows) + i, s, "audit", True) for i, s in enumerate(audit_scores)
    ]
    return _spread(strategy_items, audit_items)


def _spread(main: list[QueryItem], inserts: list[QueryItem]) -> list[QueryItem]:
    """``main`` in order with ``inserts`` placed at evenly spaced positions of the result."""
    total = len(main) + len(inserts)
    slots = {math.floor((i + 0.5) * total / len(inserts)) for i in range(len(inserts))}
    main_iter, insert_iter = iter(main), iter(inserts)
    return [next(insert_iter) if slot in slots else next(main_iter) for slot in range(total)]
