"""Which labeled items an export holds, and everything its manifest says about each.

Only items whose current decision is confirm/correct are exported; pool items form
the ``train`` split and holdout items the ``test`` split. Class indices are the
labels.db class ids everywhere (Fashion-MNIST 0-9, user classes 10, 11, ...), so a
model trained on an export agrees with the one the tool trains. Rows are fetched
in chunks, so an export streams however many items it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import sqlite_utils

from activelearn import label_issues, store
from activelearn.errors import ActiveLearnError

#: labels.db split -> exported split.
SPLIT_NAMES = {"pool": "train", "holdout": "test"}
#: Items whose metadata is fetched per query, and rows per Parquet row group.
CHUNK = 256


@dataclass(frozen=True)
class ExportFilters:
    """Which labeled items to export; the defaults export every confirmed/corrected item.

    ``annotator`` and ``only_human_confirmed`` look at the item's *current* decision,
    the one that sets its exported label. ``since`` / ``until`` bound the time of that
    decision; a bare date (``2024-05-01``) means the whole day, UTC. With
    ``exclude_label_errors`` items with an open issue from the latest label-issue scan
    (`activelearn.label_issues`) are left out; a scan must have been run.
    """

    classes: tuple[str, ...] = ()
    only_human_confirmed: bool = False
    exclude_label_errors: bool = False
    annotator: str | None = None
    since: str | date | datetime | None = None
    until: str | date | datetime | None = None
    include_holdout: bool = True

    def describe(self) -> list[str]:
        """One line per active filter, for the dataset card."""
        lines = []
        if self.classes:
            lines.append("classes: " + ", ".join(self.classes))
        if self.only_human_confirmed:
            lines.append(f"only human decisions (pre-labels by {store.IMPORT_ANNOTATOR!r} left out)")
        if self.exclude_label_errors:
            lines.append("items with an open label issue left out")
        if self.annotator:
            lines.append(f"current decision by {self.annotator!r}")
        if self.since is not None:
            lines.append(f"decided at or after {self.since}")
        if self.until is not None:
            lines.append(f"decided at or before {self.until}")
        if not self.include_holdout:
            lines.append("holdout (test) items left out")
        return lines


@dataclass(frozen=True)
class Selected:
    """One item the filters chose, with what the selection query already knows of it."""

    item_id: int
    split: str        # train / test
    class_id: int
    source: str
    labeled_by: str   # annotator of the current decision
    event_id: int     # the current decision


@dataclass(frozen=True)
class Record:
    """One exported item with everything the manifest columns need."""

    item_id: int
    sha256: str
    original_name: str
    source: str
    split: str
    stored_path: str | None
    image_format: str | None
    width: int | None
    height: int | None
    flags: str
    class_id: int
    decision: str
    labeled_by: str
    last_decision_at: str
    first_decision_at: str
    decisions: int
    annotators: list[str]
    model_version: str | None
    predicted_class_id: int | None
    confidence: float | None
    near_dup_group: str


def _bound(value: str | date | datetime | None, *, end: bool) -> str | None:
    """A filter bound as labels.db stores times (UTC ISO with ms), for text comparison.

    A bare date covers the whole day: ``until`` becomes the start of the next day,
    compared with '<'; a datetime ``until`` is compared with '<=' (1 ms added here).
    """
    if value is None:
        return None
    try:
        if isinstance(value, datetime):
            moment, whole_day = value, False
        elif isinstance(value, date):
            moment, whole_day = datetime.combine(value, time()), True
        else:
            text = str(value).strip()
            whole_day = len(text) == 10
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise ActiveLearnError(f"bad date {value!r}: use YYYY-MM-DD or an ISO date and time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if end:
        moment += timedelta(days=1) if whole_day else timedelta(milliseconds=1)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def select_items(db: sqlite_utils.Database, filters: ExportFilters) -> list[Selected]:
    """The items to export, train before test, each in item-id order."""
    class_ids = [store.resolve_class(db, name).id for name in filters.classes] if filters.classes else None
    rows = store.export_rows(db, class_ids=None,   # classes are filtered after the consensus below
                             not_annotator=store.IMPORT_ANNOTATOR if filters.only_human_confirmed else None,
                             annotator=filters.annotator or None,
                             since=_bound(filters.since, end=False), until=_bound(filters.until, end=True),
                             include_holdout=filters.include_holdout)
    if filters.exclude_label_errors:
        if label_issues.last_scan(db) is None:
            raise ActiveLearnError("no label-issue scan has been run: run `label-errors` first, "
                                   "or export without --exclude-label-errors")
        flagged = label_issues.open_issue_ids(db)
        rows = [row for row in rows if row[0] not in flagged]
    # where several people voted, the consensus is the label (every voter stays in the record's annotators)
    from activelearn.labeling import consensus_labels

    consensus = consensus_labels(db)
    selected = [Selected(item_id, SPLIT_NAMES[split], consensus.get(item_id, class_id), source, annotator,
                         event_id) for item_id, split, class_id, source, annotator, event_id in rows]
    if class_ids is not None:
        selected = [s for s in selected if s.class_id in class_ids]
    return selected


def _near_dup_roots(db: sqlite_utils.Database) -> dict[int, str]:
    """item id -> sha256 of the first item of its near_dup_of chain (only items in a chain)."""
    parent = store.near_dup_parents(db)
    roots: dict[int, int] = {}
    for item_id in parent:
        seen, node = {item_id}, parent[item_id]
        while node in parent and node not in seen:  # chains point at older items; guard anyway
            seen.add(node)
            node = parent[node]
        roots[item_id] = node
    shas = store.item_sha256s(db, roots.values())
    return {item_id: shas[root] for item_id, root in roots.items()}


def iter_records(db: sqlite_utils.Database, selected: Sequence[Selected]) -> Iterator[Record]:
    """Full rows for the selected items, fetched CHUNK at a time, in selection order.

    Decision counts, first time and annotators cover effective decisions of any kind
    (an undone decision and the undo itself do not count). Rows are fetched by the current
    decision's event id, which select_items read, so item_state is read once, not per chunk.
    """
    roots = _near_dup_roots(db)
    for start in range(0, len(selected), CHUNK):
        chunk = selected[start:start + CHUNK]
        rows = store.export_records(db, [s.event_id for s in chunk])
        history: dict[int, list[tuple[str, str]]] = {}
        for item_id, annotator, created_at in store.effective_decisions_of(db, [s.item_id for s in chunk]):
            history.setdefault(item_id, []).append((annotator, created_at))
        for sel in chunk:
            (item_id, sha, name, source, stored, fmt, width, height, flags, class_id, action,
             labeled_by, last_at, model_version, predicted, confidence) = rows[sel.item_id]
            decisions = history[item_id]
            yield Record(
                item_id=item_id, sha256=sha, original_name=name, source=source, split=sel.split,
                stored_path=stored, image_format=fmt, width=width, height=height, flags=flags,
                class_id=sel.class_id, decision=action if sel.class_id == class_id else "consensus",
                labeled_by=labeled_by, last_decision_at=last_at,
                first_decision_at=min(at for _, at in decisions), decisions=len(decisions),
                annotators=sorted({annotator for annotator, _ in decisions}),
                model_version=model_version, predicted_class_id=predicted, confidence=confidence,
                near_dup_group=roots.get(item_id, sha))
