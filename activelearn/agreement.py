"""Teams: overlap selection, inter-annotator agreement, consensus labels and annotator quality.

A lead running several annotators needs to know whom to trust and which labels are
contested. Everything here is a pure function of a *votes* table, one row per
(item, annotator) with that annotator's latest class for the item, so it runs the
same on labels.db, in the UI and in tests:

* **Overlap**: :func:`choose_overlap_items` picks a share of items at random (never by
  uncertainty, or the agreement figures would describe only the hard items) to be
  labeled by k annotators; :func:`eligible_for_overlap` says whether one may be served
  to an annotator (never twice to the same person, only until it has k votes).
* **Agreement** on the overlapped items: Cohen's kappa for each pair
  (:func:`pairwise_kappa`, scikit-learn), Krippendorff's alpha overall and per class
  (:func:`alpha`, the ``krippendorff`` package) and its trend (:func:`agreement_over_time`),
  each with the number of items behind it.
* **Consensus**: :func:`consensus` runs cleanlab's CROWDLAB, which weighs each annotator
  and the model's probabilities by how trustworthy they prove; :func:`annotator_accuracy`
  and :func:`disagreement_queue` turn its result into what a lead reads and decides.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from activelearn.errors import ActiveLearnError

#: Columns of a votes table; ``created_at`` (ISO text or timestamps) is optional.
ITEM, ANNOTATOR, CLASS, CREATED = "item_id", "annotator", "class_index", "created_at"
#: Default share of items sent to several annotators, and how many each gets.
DEFAULT_SHARE = 0.10
DEFAULT_K = 2


class AgreementError(ActiveLearnError):
    """Votes that cannot give the figure asked for (too few annotators, misaligned probabilities)."""


def _number(value: float) -> float | None:
    """A float for JSON: NaN (an undefined figure) becomes None."""
    return None if value is None or math.isnan(value) else float(value)


# ---------------------------------------------------------------- votes

def votes_frame(rows: Iterable[Sequence[Any]], *, with_times: bool | None = None) -> pd.DataFrame:
    """A votes table from (item_id, annotator, class_index[, created_at]) rows.

    `with_times` says whether rows carry the time (default: as the first row does; an
    empty table has no times unless told). Each annotator has one vote per item (their
    latest decision): a second one is refused, or one person would agree with themselves.
    """
    rows = [tuple(row) for row in rows]
    if with_times is None:
        with_times = bool(rows) and len(rows[0]) == 4
    columns = [ITEM, ANNOTATOR, CLASS] + ([CREATED] if with_times else [])
    if any(len(row) != len(columns) for row in rows):
        raise AgreementError("every vote needs the same fields: item id, annotator, class index "
                             "and optionally its time")
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame.astype({ITEM: "int64", ANNOTATOR: "str", CLASS: "int64"})
    if with_times:
        frame[CREATED] = pd.to_datetime(frame[CREATED], utc=True, format="ISO8601")
    repeated = frame.duplicated([ITEM, ANNOTATOR])
    if repeated.any():
        item, who = frame.loc[repeated, [ITEM, ANNOTATOR]].iloc[0]
        raise AgreementError(f"{who} has two votes on item {item}: pass each annotator's latest vote only")
    if (frame[CLASS] < 0).any():
        raise AgreementError("class indices must be 0 or more")
    return frame.sort_values([ITEM, ANNOTATOR], ignore_index=True)


def multiannotator_matrix(votes: pd.DataFrame) -> pd.DataFrame:
    """cleanlab's multi-annotator format: items (ascending ids) x annotators (sorted), NaN where no vote."""
    matrix = votes.pivot(index=ITEM, columns=ANNOTATOR, values=CLASS).astype(float)
    matrix = matrix.sort_index().reindex(sorted(matrix.columns), axis=1)
    matrix.index.name, matrix.columns.name = ITEM, ANNOTATOR
    return matrix


def voted_items(votes: pd.DataFrame) -> np.ndarray:
    """The ids of items with at least one vote, ascending: the row order :func:`consensus` expects."""
    return np.sort(votes[ITEM].unique()).astype(np.int64)


def overlapped(votes: pd.DataFrame) -> pd.DataFrame:
    """The votes on items that at least two annotators labeled: the only ones agreement can be measured on."""
    counts = votes.groupby(ITEM)[ANNOTATOR].transform("size")
    return votes[counts >= 2]


def align_probs(votes: pd.DataFrame, scored_ids: np.ndarray,
                probs: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, int]:
    """(votes the model can speak for, their items' probability rows, votes left out).

    A model scores only some items (a photo model skips items not embedded yet) and knows
    only the classes it was trained with; votes outside either cannot enter CROWDLAB.
    """
    scored = pd.Index(np.asarray(scored_ids, dtype=np.int64))
    if not scored.is_unique:
        raise AgreementError("each item may have one probability row only")
    probs = np.asarray(probs, dtype=float)
    usable = (scored.get_indexer(votes[ITEM]) >= 0) & (votes[CLASS].to_numpy() < probs.shape[1])
    kept = votes[usable].reset_index(drop=True)
    return kept, probs[scored.get_indexer(voted_items(kept))], int(len(votes) - len(kept))


# ---------------------------------------------------------------- agreement

@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa of two annotators over the items both labeled (NaN: none, or undefined)."""

    annotator_a: str
    annotator_b: str
    kappa: float
    n_items: int

    def as_dict(self) -> dict[str, Any]:
        return {"annotator_a": self.annotator_a, "annotator_b": self.annotator_b,
                "kappa": _number(self.kappa), "n_items": self.n_items}


@dataclass(frozen=True)
class KappaMatrix:
    """Pairwise kappa as annotator x annotator tables (symmetric; the diagonal is NaN / own item count)."""

    annotators: list[str]
    kappa: pd.DataFrame
    n_items: pd.DataFrame
    pairs: list[PairKappa]

    def as_dict(self) -> dict[str, Any]:
        return {"annotators": self.annotators, "pairs": [p.as_dict() for p in self.pairs],
                "kappa": [[_number(v) for v in row] for row in self.kappa.to_numpy()],
                "n_items": self.n_items.to_numpy().tolist()}


def pairwise_kappa(votes: pd.DataFrame) -> KappaMatrix:
    """Cohen's kappa (scikit-learn) for every annotator pair, with the items behind each figure."""
    from sklearn.metrics import cohen_kappa_score

    matrix = multiannotator_matrix(votes)
    names = list(matrix.columns)
    classes = sorted(votes[CLASS].unique().tolist())
    kappa = pd.DataFrame(np.nan, index=names, columns=names)
    counts = pd.DataFrame(0, index=names, columns=names)
    pairs = []
    for i, a in enumerate(names):
        counts.loc[a, a] = int(matrix[a].notna().sum())
        for b in names[i + 1:]:
            both = matrix[a].notna() & matrix[b].notna()
            n = int(both.sum())
            value = math.nan
            if n:
                with warnings.catch_warnings():   # a pair that agrees on one class only: undefined, NaN
                    warnings.simplefilter("ignore")
                    value = float(cohen_kappa_score(matrix.loc[both, a].astype(int), matrix.loc[both, b].astype(int),
                                                    labels=classes))
            kappa.loc[a, b] = kappa.loc[b, a] = value
            counts.loc[a, b] = counts.loc[b, a] = n
            pairs.append(PairKappa(a, b, value, n))
    return KappaMatrix(names, kappa, counts, pairs)


@dataclass(frozen=True)
class AlphaFigure:
    """Krippendorff's alpha over `n_items` overlapped items holding `n_votes` votes (NaN: undefined)."""

    alpha: float
    n_items: int
    n_votes: int

    def as_dict(self) -> dict[str, Any]:
        return {"alpha": _number(self.alpha), "n_items": self.n_items, "n_votes": self.n_votes}


@dataclass(frozen=True)
class ClassAlpha:
    """One-vs-rest alpha of a class over the overlapped items; `n_items_with_class`: items someone put in it."""

    class_index: int
    alpha: float
    n_items: int
    n_items_with_class: int

    def as_dict(self) -> dict[str, Any]:
        return {"class_index": self.class_index, "alpha": _number(self.alpha), "n_items": self.n_items,
                "n_items_with_class": self.n_items_with_class}


@dataclass(frozen=True)
class AlphaReport:
    overall: AlphaFigure
    per_class: list[ClassAlpha]

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.as_dict(), "per_class": [c.as_dict() for c in self.per_class]}


def _nominal_alpha(reliability: np.ndarray) -> float:
    """The krippendorff package's nominal alpha of an (annotators x items) matrix; NaN when undefined.

    Undefined: fewer than two distinct values (everyone chose the same class), or no item with two votes.
    """
    import krippendorff

    values = np.unique(reliability[~np.isnan(reliability)])
    if len(values) < 2 or not (np.sum(~np.isnan(reliability), axis=0) >= 2).any():
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(reliability_data=reliability, value_domain=values,
                                        level_of_measurement="nominal"))


def alpha(votes: pd.DataFrame) -> AlphaReport:
    """Krippendorff's alpha (nominal) across the overlapped items: overall and per class, one-vs-rest."""
    shared = overlapped(votes)
    reliability = multiannotator_matrix(shared).to_numpy().T if len(shared) else np.empty((0, 0))
    n_items = reliability.shape[1]
    overall = AlphaFigure(_nominal_alpha(reliability), n_items, int(len(shared)))
    per_class = []
    for cls in sorted(shared[CLASS].unique().tolist()):
        binary = np.where(np.isnan(reliability), np.nan, (reliability == cls).astype(float))
        with_class = int(np.any(reliability == cls, axis=0).sum())
        per_class.append(ClassAlpha(int(cls), _nominal_alpha(binary), n_items, with_class))
    return AlphaReport(overall, per_class)


@dataclass(frozen=True)
class TrendPoint:
    """Agreement on the items whose overlap was completed in [start, end) (the last period holds its end)."""

    start: pd.Timestamp
    end: pd.Timestamp
    alpha: float
    unanimous: float
    n_items: int

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "alpha": _number(self.alpha),
                "unanimous": _number(self.unanimous), "n_items": self.n_items}


def agreement_over_time(votes_with_times: pd.DataFrame, bins: int | str = 10) -> list[TrendPoint]:
    """Agreement per period, so a lead sees whether a team converges (guidelines work) or drifts.

    An overlapped item counts in the period of its latest vote, the moment its overlap was
    complete. `bins` is a number of equal periods between the first and the last such moment,
    or a pandas frequency ("D": per day, "W": per week). Periods without items have n_items 0.
    """
    if CREATED not in votes_with_times.columns:
        raise AgreementError("the agreement trend needs the time of each vote")
    shared = overlapped(votes_with_times)
    if shared.empty:
        return []
    completed = shared.groupby(ITEM)[CREATED].max()
    if isinstance(bins, str):
        naive = completed.dt.tz_convert(None)
        periods = pd.period_range(naive.min(), naive.max(), freq=bins)
        edges = pd.DatetimeIndex([p.start_time for p in periods] + [(periods[-1] + 1).start_time], tz="UTC")
    else:
        if bins < 1:
            raise AgreementError("the trend needs at least one period")
        span = completed.max() - completed.min()
        edges = pd.DatetimeIndex([completed.min() + span * (i / bins) for i in range(bins + 1)])
    period = np.clip(edges.searchsorted(completed, side="right") - 1, 0, len(edges) - 2)
    points = []
    for p in range(len(edges) - 1):
        items = completed.index[period == p]
        period_votes = shared[shared[ITEM].isin(items)]
        if items.empty:
            points.append(TrendPoint(edges[p], edges[p + 1], math.nan, math.nan, 0))
            continue
        matrix = multiannotator_matrix(period_votes)
        unanimous = float((period_votes.groupby(ITEM)[CLASS].nunique() == 1).mean())
        points.append(TrendPoint(edges[p], edges[p + 1], _nominal_alpha(matrix.to_numpy().T), unanimous,
                                 len(items)))
    return points


# ---------------------------------------------------------------- consensus and quality

@dataclass(frozen=True)
class AnnotatorQuality:
    """CROWDLAB's overall quality of one annotator's labels (0..1, higher is better)."""

    annotator: str
    quality: float
    n_items: int
    worst_class: int

    def as_dict(self) -> dict[str, Any]:
        return {"annotator": self.annotator, "quality": _number(self.quality), "n_items": self.n_items,
                "worst_class": self.worst_class}


@dataclass(frozen=True)
class ConsensusResult:
    """One consensus label per voted item (ascending ids) with its quality, and each annotator's quality."""

    item_ids: np.ndarray      # (n,) int64
    labels: np.ndarray        # (n,) consensus class index
    quality: np.ndarray       # (n,) CROWDLAB consensus quality, 0..1
    agreement: np.ndarray     # (n,) share of the item's votes equal to the consensus
    n_votes: np.ndarray       # (n,)
    annotators: list[AnnotatorQuality]   # best first
    model_weight: float       # how much CROWDLAB trusted the model relative to the annotators
    matrix: pd.DataFrame      # the votes, items x annotators

    def as_dict(self) -> dict[str, Any]:
        return {"model_weight": _number(self.model_weight),
                "annotators": [a.as_dict() for a in self.annotators],
                "items": [{"item_id": int(i), "consensus": int(c), "quality": float(q), "agreement": float(a),
                           "n_votes": int(n)} for i, c, q, a, n in
                          zip(self.item_ids, self.labels, self.quality, self.agreement, self.n_votes)]}


def consensus(votes: pd.DataFrame, pred_probs: np.ndarray) -> ConsensusResult:
    """Consensus labels and annotator quality from CROWDLAB (cleanlab.multiannotator).

    `pred_probs` are the model's out-of-sample class probabilities, one row per voted item
    in ascending id order (:func:`voted_items`). An item with a single vote keeps that
    vote: CROWDLAB would let the model overrule a lone annotator, and nobody disagreed.
    """
    from cleanlab.multiannotator import get_label_quality_multiannotator

    matrix = multiannotator_matrix(votes)
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or len(pred_probs) != len(matrix):
        raise AgreementError(f"consensus needs one probability row per voted item ({len(matrix)}), "
                             f"got an array of shape {pred_probs.shape}")
    if len(votes) and votes[CLASS].max() >= pred_probs.shape[1]:
        raise AgreementError(f"a vote names class {votes[CLASS].max()} but the model has only "
                             f"{pred_probs.shape[1]} classes")
    n_votes = matrix.notna().sum(axis=1).to_numpy()
    if matrix.shape[1] < 2 or not (n_votes >= 2).any():
        raise AgreementError("consensus needs items labeled by at least two annotators: turn on overlap "
                             "and label some items twice")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = get_label_quality_multiannotator(matrix, pred_probs, return_weights=True, verbose=False)
    quality_table = result["label_quality"]
    labels = quality_table["consensus_label"].to_numpy().astype(np.int64)
    quality = quality_table["consensus_quality_score"].to_numpy().astype(float)
    agreement = quality_table["annotator_agreement"].to_numpy().astype(float)
    single = n_votes == 1
    own_vote = matrix.to_numpy()
    labels[single] = np.nanmax(own_vote[single], axis=1).astype(np.int64)
    quality[single] = np.nanmax(result["detailed_label_quality"].to_numpy()[single], axis=1)
    agreement[single] = 1.0
    stats = result["annotator_stats"].sort_values("annotator_quality", ascending=False)
    annotators = [AnnotatorQuality(str(who), float(row.annotator_quality), int(row.num_examples_labeled),
                                   int(row.worst_class)) for who, row in stats.iterrows()]
    return ConsensusResult(matrix.index.to_numpy(np.int64), labels, quality, agreement, n_votes, annotators,
                           float(result["model_weight"]), matrix)


@dataclass(frozen=True)
class AnnotatorAccuracy:
    """How often an annotator matched the consensus (on items others labeled too) and the reference set."""

    annotator: str
    vs_consensus: float
    n_consensus: int
    vs_reference: float
    n_reference: int

    def as_dict(self) -> dict[str, Any]:
        return {"annotator": self.annotator, "vs_consensus": _number(self.vs_consensus),
                "n_consensus": self.n_consensus, "vs_reference": _number(self.vs_reference),
                "n_reference": self.n_reference}


def annotator_accuracy(votes: pd.DataFrame, reference: Mapping[int, int],
                       result: ConsensusResult) -> list[AnnotatorAccuracy]:
    """Per-annotator accuracy against the consensus and against trusted labels (audit slice, holdout).

    Against the consensus only items with another vote count: on an item an annotator
    labeled alone the consensus is their own vote. The reference is what no consensus can
    give, an unbiased check: labels a lead trusts on items drawn at random.
    """
    consensus_of = pd.Series(result.labels, index=result.item_ids)
    shared_items = set(result.item_ids[result.n_votes >= 2].tolist())
    truth = pd.Series(dict(reference), dtype="int64")
    rows = []
    for who, own in votes.groupby(ANNOTATOR, sort=True):
        on_shared = own[own[ITEM].isin(shared_items)]
        hits_c = (on_shared[CLASS].to_numpy() == consensus_of.reindex(on_shared[ITEM]).to_numpy())
        on_ref = own[own[ITEM].isin(truth.index)]
        hits_r = on_ref[CLASS].to_numpy() == truth.reindex(on_ref[ITEM]).to_numpy()
        rows.append(AnnotatorAccuracy(str(who), float(hits_c.mean()) if len(hits_c) else math.nan, len(hits_c),
                                      float(hits_r.mean()) if len(hits_r) else math.nan, len(hits_r)))
    return rows


@dataclass(frozen=True)
class QueueEntry:
    """An item for the lead to decide: its votes, CROWDLAB's consensus and how sure that is."""

    item_id: int
    consensus: int
    quality: float
    agreement: float
    votes: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "consensus": self.consensus, "quality": self.quality,
                "agreement": self.agreement, "votes": self.votes}


def disagreement_queue(result: ConsensusResult) -> list[QueueEntry]:
    """Items with several votes for the lead: contested ones (votes differ) first, each group by rising quality."""
    rows = np.flatnonzero(result.n_votes >= 2)
    contested = result.agreement[rows] < 1.0
    order = rows[np.lexsort((result.item_ids[rows], result.quality[rows], ~contested))]
    matrix = result.matrix.to_numpy()
    names = list(result.matrix.columns)
    return [QueueEntry(int(result.item_ids[r]), int(result.labels[r]), float(result.quality[r]),
                       float(result.agreement[r]),
                       {names[j]: int(matrix[r, j]) for j in np.flatnonzero(~np.isnan(matrix[r]))})
            for r in order]


def majority_labels(vote_rows: Iterable[Sequence[Any]]) -> dict[int, int]:
    """item id -> consensus class of every item with votes from two or more people.

    `vote_rows` are (item id, annotator, class id[, time]) rows, one per person per item
    (store.annotator_votes). The label that training and exports use where several people
    voted: cleanlab's majority vote, ties broken by class frequency, annotator quality, then
    at random (no model is needed, so an export stays free of TensorFlow).
    """
    votes = overlapped(votes_frame(vote_rows))
    if votes.empty:
        return {}
    matrix = multiannotator_matrix(votes)
    from cleanlab.multiannotator import get_majority_vote_label

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # cleanlab warns about annotators with few votes
        try:
            consensus = get_majority_vote_label(matrix, verbose=False)
        except ValueError:
            # every tie-break cleanlab tries came out even (e.g. one item voted 2 to 2): it then draws
            # from an empty set. Break ties by how often each class was voted, then the lower class id.
            frequency = np.bincount(votes[CLASS], minlength=int(votes[CLASS].max()) + 1).astype(float)
            prior = frequency / frequency.sum() - 1e-9 * np.arange(len(frequency))   # never two alike
            prior = np.tile(prior / prior.sum(), (len(matrix), 1))
            consensus = get_majority_vote_label(matrix, pred_probs=prior, verbose=False)
    return {int(item): int(label) for item, label in zip(matrix.index, consensus)}


# ---------------------------------------------------------------- overlap selection

@dataclass(frozen=True)
class OverlapPlan:
    """Which items go to several annotators, and to how many."""

    items: frozenset[int]
    k: int

    def votes_wanted(self, item_id: int) -> int:
        """How many annotators should label this item: k if it is overlapped, else one."""
        return self.k if int(item_id) in self.items else 1


def choose_overlap_items(item_ids: Iterable[int], share: float = DEFAULT_SHARE, k: int = DEFAULT_K,
                         rng: np.random.Generator | None = None) -> OverlapPlan:
    """Pick `share` of the items (rounded half up) uniformly at random to be labeled by `k` annotators.

    At random and never by uncertainty: agreement measured on the items a model finds hard
    would understate how well the team agrees on the data as a whole.
    """
    if not 0.0 <= share <= 1.0:
        raise AgreementError(f"the overlap share must be between 0 and 1, got {share}")
    if k < 2:
        raise AgreementError(f"overlapped items need at least 2 annotators, got k={k}")
    ids = np.unique(np.asarray(list(item_ids), dtype=np.int64))
    count = math.floor(len(ids) * share + 0.5)
    rng = rng if rng is not None else np.random.default_rng()
    chosen = rng.choice(ids, size=count, replace=False) if count else ids[:0]
    return OverlapPlan(frozenset(int(i) for i in chosen), int(k))


def overlap_draw(item_ids: Sequence[int] | np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Mask: which items are overlapped, each kept with probability `share` by a hash of (seed, id).

    The draw is a fixed coin per item, so it holds as the pool grows and whichever process
    asks; it is random with respect to the model (never by uncertainty). splitmix64 mixes the id.
    """
    if not 0.0 <= share <= 1.0:
        raise AgreementError(f"the overlap share must be between 0 and 1, got {share}")
    with np.errstate(over="ignore"):
        z = np.asarray(item_ids, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < share


def eligible_for_overlap(item_id: int, annotator: str, votes: pd.DataFrame, k: int) -> bool:
    """May this overlapped item be served to `annotator`: they have not voted on it and it has < k votes."""
    voters = votes.loc[votes[ITEM] == int(item_id), ANNOTATOR]
    return annotator not in set(voters) and voters.nunique() < k
