"""One browser tab's place in the labeling queue: leased entries, prefetch, the item on screen.

UI-free, so the Label tab stays a thin shell and tests can drive the queue
without Gradio. A `LabelSession` holds entries leased to its annotator by
`labeling.next_items`, shows them one at a time and refills when few remain;
it drops entries scored by a model that is no longer active (entries served
before any model existed leave once one is active), or whose lease is about to
run out (someone else may get them next), and it puts items back on screen for
undo and after a grid page.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from activelearn import labeling, store
from activelearn.config import Paths
from activelearn.labeling import QueueEntry, Workspace

FETCH = 12            # entries leased per refill
REFILL_BELOW = 4      # refill when fewer prefetched entries remain
#: Drop prefetched entries this close to their lease expiry: someone else may get them next.
STALE_AFTER_S = labeling.LEASE_S - 30
SEEN_KEPT = 2000      # entries remembered per session, so undo can show them again


@dataclass
class LabelSession:
    """Per-browser-tab state; the lock serialises this tab's events (keys can arrive together)."""

    strategy: str = "margin"
    class_filter: int | None = None
    current: QueueEntry | None = None
    queue: deque[QueueEntry] = field(default_factory=deque)
    fetched_at: dict[int, float] = field(default_factory=dict)
    seen: dict[int, QueueEntry] = field(default_factory=dict)
    grid: list[QueueEntry] = field(default_factory=list)
    class_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def held(self) -> list[QueueEntry]:
        """The item on screen and the prefetched ones: everything this tab holds a lease on."""
        return ([self.current] if self.current else []) + list(self.queue)

    def advance(self, source: Paths | Workspace, annotator: str) -> None:
        """Put the next usable prefetched entry on screen, refilling the queue when it runs low.

        Without an active model the refill is the random queue, so labeling starts at once.
        """
        ws = labeling.as_workspace(source)
        now = time.monotonic()
        self.queue = deque(e for e in self.queue if e.model_version == ws.version
                           and now - self.fetched_at.get(e.item_id, now) < STALE_AFTER_S)
        if len(self.queue) < REFILL_BELOW:
            self._refill(ws, annotator)
        self.take_next()

    def _refill(self, ws: Workspace, annotator: str) -> None:
        held = {e.item_id for e in self.held()}
        fresh = labeling.next_items(ws, annotator=annotator, n=FETCH, strategy=self.strategy,
                                    class_filter=self.class_filter)
        self._enqueue(e for e in fresh if e.item_id not in held)

    def _enqueue(self, entries: Iterable[QueueEntry], *, first: bool = False) -> None:
        """Queue entries (at the back, or in order at the front), stamped with the time their lease began."""
        entries = list(entries)
        now = time.monotonic()
        for entry in entries:
            self.fetched_at[entry.item_id] = now
        if first:
            self.queue.extendleft(reversed(entries))
        else:
            self.queue.extend(entries)

    def take_next(self) -> None:
        """Move the head of the queue on screen and remember it (undo may bring it back)."""
        self.current = self.queue.popleft() if self.queue else None
        if self.current is not None:
            self.fetched_at.pop(self.current.item_id, None)
            self.remember(self.current)

    def remember(self, entry: QueueEntry) -> None:
        self.seen[entry.item_id] = entry
        while len(self.seen) > SEEN_KEPT:
            del self.seen[next(iter(self.seen))]

    def release(self, db, annotator: str) -> None:
        """Drop everything held and give the leases back at once (the queue options changed)."""
        labeling.lease(db, [e.item_id for e in self.held()], annotator, seconds=0)
        self.queue.clear()
        self.current = None

    def bring_back(self, db, annotator: str, entry: QueueEntry) -> None:
        """Undo: show `entry` again, leased anew; the item that was on screen comes right after it.

        It is a new serving (its own serve id, the item's label as it now stands), so deciding
        it again records a new event instead of returning the undone one.
        """
        entry = replace(entry, strategy="undo", serve_id=uuid.uuid4().hex,
                        served_event_id=store.current_event(db, entry.item_id))
        if self.current is not None and self.current.item_id != entry.item_id:
            self.queue.appendleft(self.current)
        self.queue = deque(e for e in self.queue if e.item_id != entry.item_id)
        labeling.lease(db, [entry.item_id], annotator)
        self.current = entry
        self.remember(entry)

    def after_grid(self, decided: set[int], unticked: list[QueueEntry]) -> None:
        """After a grid page: its unticked entries come first (to be corrected), then what was held."""
        done = decided | {e.item_id for e in unticked}
        rest = [e for e in self.held() if e.item_id not in done]
        self.queue = deque(rest)
        self._enqueue(unticked, first=True)
        self.take_next()
