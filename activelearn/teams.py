"""What a lead reads about the team, from labels.db: agreement, consensus, annotator quality, contested items.

The figures are activelearn.agreement's pure functions; this module reads their input
(each person's latest vote per item; folder pre-labels of `import` are no one's vote)
and the active model's probabilities, so the CLI (`agreement`, `consensus`) and the
Review tab's Team section show the same numbers. TensorFlow is imported only when the
scoring cache lacks some voted item and the model must score it.

Reference annotators (e.g. the leads) are the yardstick, not voters: their votes stay
out of the consensus, each annotator's accuracy is measured against them, and an item
they decided has left the lead's disagreement queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from activelearn import agreement, store
from activelearn.agreement import (
    ANNOTATOR,
    CLASS,
    CREATED,
    ITEM,
    AgreementError,
    AlphaReport,
    AnnotatorAccuracy,
    ConsensusResult,
    KappaMatrix,
    QueueEntry,
    TrendPoint,
)
from activelearn.config import Paths
from activelearn.errors import ActiveLearnError

#: Trend periods unless told: ten equal periods between the first and the last completed overlap.
DEFAULT_BINS = 10
NO_OVERLAP = ("consensus needs items labeled by at least two annotators: turn on overlap and label "
              "some items twice")


def load_votes(paths: Paths) -> tuple[pd.DataFrame, list[str]]:
    """(votes table with times, class names) from labels.db: each person's latest vote per item."""
    db = store.open_db(paths.db)
    votes = agreement.votes_frame(store.annotator_votes(db), with_times=True)
    votes = votes[votes[ANNOTATOR] != store.IMPORT_ANNOTATOR].reset_index(drop=True)
    return votes, store.class_names(db)


@dataclass(frozen=True)
class AgreementReport:
    """Agreement over the overlapped items: alpha (overall, per class), kappa per pair and the trend."""

    overlapped: pd.DataFrame      # the votes on items two or more people labeled
    alpha: AlphaReport
    kappa: KappaMatrix
    trend: list[TrendPoint]
    bins: int | str

    @property
    def n_annotators(self) -> int:
        return int(self.overlapped[ANNOTATOR].nunique())

    def as_dict(self, class_names: Sequence[str]) -> dict:
        return {"classes": list(class_names), "alpha": self.alpha.as_dict(), "kappa": self.kappa.as_dict(),
                "trend": [point.as_dict() for point in self.trend]}


def agreement_report(votes: pd.DataFrame, bins: int | str = DEFAULT_BINS) -> AgreementReport:
    """Kappa, alpha and trend on the votes of items labeled by several people (no model needed)."""
    shared = agreement.overlapped(votes)
    return AgreementReport(shared, agreement.alpha(shared), agreement.pairwise_kappa(shared),
                           agreement.agreement_over_time(shared, bins), bins)


@dataclass(frozen=True)
class ConsensusReport:
    """CROWDLAB's result with each annotator's accuracy and the items for the lead, contested first."""

    version: str
    result: ConsensusResult
    accuracy: dict[str, AnnotatorAccuracy]
    queue: list[QueueEntry]
    reference: dict[int, int]     # item id -> the reference annotators' latest class
    left_out_votes: int           # votes the model cannot speak for (unscored item, newer class)


def split_reference(votes: pd.DataFrame, reference: Sequence[str]) -> tuple[pd.DataFrame, dict[int, int]]:
    """(the votes of everyone else, item id -> the reference annotators' class, the latest one winning)."""
    is_reference = votes[ANNOTATOR].isin(list(reference))
    ordered = votes[is_reference]
    if CREATED in ordered.columns:
        ordered = ordered.sort_values(CREATED, kind="stable")
    return (votes[~is_reference].reset_index(drop=True),
            {int(item): int(cls) for item, cls in zip(ordered[ITEM], ordered[CLASS])})


def consensus_report(paths: Paths, votes: pd.DataFrame, reference: Sequence[str] = (),
                     version: str | None = None) -> ConsensusReport:
    """Consensus of the non-reference votes, weighed with `version`'s (default: active) cached probabilities.

    Refused before any scoring when no item has two votes, so a team without overlap
    never waits for TensorFlow to learn that.
    """
    from activelearn import registry, scoring

    voters, reference_labels = split_reference(votes, reference)
    if agreement.overlapped(voters).empty or voters[ANNOTATOR].nunique() < 2:
        raise AgreementError(NO_OVERLAP)
    version = version or registry.require_active(paths.models)
    scores = scoring.score_items(paths, version)
    kept, probs, left_out = agreement.align_probs(voters, scores.item_ids, scores.probs)
    result = agreement.consensus(kept, probs)
    accuracy = {row.annotator: row for row in agreement.annotator_accuracy(kept, reference_labels, result)}
    return ConsensusReport(version, result, accuracy, agreement.disagreement_queue(result), reference_labels,
                           left_out)


@dataclass(frozen=True)
class TeamReport:
    """Everything a lead reads about the team; `consensus` is None (with `consensus_note` saying why) when
    it cannot be computed: no overlap, no active model, no overlapped item the model scored."""

    class_names: list[str]
    votes: pd.DataFrame
    agreement: AgreementReport
    consensus: ConsensusReport | None
    consensus_note: str
    reference: tuple[str, ...]

    @property
    def has_overlap(self) -> bool:
        return not self.agreement.overlapped.empty

    def open_queue(self) -> list[QueueEntry]:
        """The disagreement queue without the items a reference annotator (a lead) has decided."""
        if self.consensus is None:
            return []
        return [entry for entry in self.consensus.queue if entry.item_id not in self.consensus.reference]


def team_report(paths: Paths, *, reference: Sequence[str] = (), bins: int | str = DEFAULT_BINS,
                version: str | None = None) -> TeamReport:
    """Agreement, consensus, annotator quality and the disagreement queue from labels.db now.

    The agreement figures count every voter (the reference annotators too: they labeled
    the items); the consensus counts everyone but the reference annotators.
    """
    votes, names = load_votes(paths)
    report = agreement_report(votes, bins)
    consensus, note = None, ""
    try:
        consensus = consensus_report(paths, votes, reference, version)
    except ActiveLearnError as exc:   # no overlap, no active model, nothing scored: the tables still help
        note = str(exc)
    return TeamReport(names, votes, report, consensus, note, tuple(reference))


def decided_items(paths: Paths, deciders: Sequence[str]) -> set[int]:
    """Items on which one of `deciders` (the leads) has a vote now: they have left the disagreement queue."""
    votes, _ = load_votes(paths)
    return set(votes.loc[votes[ANNOTATOR].isin(list(deciders)), ITEM].astype(int).tolist())

