"""The annotator's screen: the next uncertain item, decided by one click or one key.

Each browser tab keeps a `LabelSession` in gr.State: a queue of prefetched
entries (leased to this annotator by `labeling.next_items`), the item on
screen and this session's decisions. Deciding records the event, then shows
the next prefetched entry at once; the queue refills when it runs low. The
handlers below are module-level so tests call them directly; `build` only
wires them to components. Every state-changing handler checks the role first.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from activelearn import jobs, labeling, registry, store
from activelearn.errors import ActiveLearnError
from activelearn.labeling import QueueEntry
from activelearn.ui.context import UIContext

STRATEGIES = ("margin", "entropy", "least-confidence", "diverse", "random")
ALL_CLASSES = "All classes"
FETCH = 12            # entries leased per refill
REFILL_BELOW = 4      # refill when fewer prefetched entries remain
GRID_SIZE = 18
ZOOM = 8              # 28x28 shown as 224x224, nearest neighbour
#: Drop prefetched entries this close to their lease expiry: someone else may get them next.
STALE_AFTER_S = labeling.LEASE_S - 30
DIGIT_KEYS = "1234567890"   # key k picks class DIGIT_KEYS.index(k)
SEEN_KEPT = 2000            # entries remembered per session, so undo can show them again
POLL_S = 2.0

_WHY = {
    "margin": "the two most likely classes are the closest (smallest margin)",
    "entropy": "the prediction is spread over many classes (highest entropy)",
    "least-confidence": "the model's top class has the lowest probability",
    "diverse": "uncertain, and unlike the other items in this batch",
    "random": "picked at random (random strategy)",
    "audit": "**audit**: picked at random, not by uncertainty, so the model is also checked "
             "on items it is sure about",
    "grid": "unticked on a grid page: pick the right class",
    "undo": "brought back by undo",
}


@dataclass
class Decided:
    """One decision made in this session (undo removes it from the tallies)."""

    event_id: int
    item_id: int
    action: str
    class_name: str | None


@dataclass
class LabelSession:
    """Per-browser-tab state; the lock serialises this tab's events (keys can arrive together)."""

    strategy: str = "margin"
    class_filter: int | None = None
    current: QueueEntry | None = None
    queue: deque[QueueEntry] = field(default_factory=deque)
    fetched_at: dict[int, float] = field(default_factory=dict)
    seen: dict[int, QueueEntry] = field(default_factory=dict)
    log: list[Decided] = field(default_factory=list)
    grid: list[QueueEntry] = field(default_factory=list)
    class_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Panel(NamedTuple):
    """The single-item view, in the order of the outputs it updates."""

    session: LabelSession
    item_id: Any          # shown item id (guards against keys meant for the previous item)
    original: Any         # file path of the stored original
    preview: Any          # 224x224 uint8, the 28x28 conversion upscaled
    top3: Any             # {class name: probability}
    why: Any
    confirm_label: Any
    counters: Any
    notice: Any
    other_class: Any      # the searchable class dropdown (update)


class GridView(NamedTuple):
    session: LabelSession
    gallery: Any
    ticked: Any
    grid_notice: Any


class ClassAdded(NamedTuple):
    other_class: Any
    grid_class: Any
    class_filter: Any
    message: str


def _session(session: LabelSession | None) -> LabelSession:
    return session if session is not None else LabelSession()


@contextmanager
def _shown_errors() -> Iterator[None]:
    """Package errors (bad class, store problems) become a message in the page, not a traceback."""
    try:
        yield
    except ActiveLearnError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc


# ---------------------------------------------------------------- rendering

def upscaled(pixels: bytes | np.ndarray, zoom: int = ZOOM) -> np.ndarray:
    """The 28x28 conversion enlarged by pixel repetition, so the annotator sees what the model sees."""
    image = np.frombuffer(pixels, np.uint8).reshape(28, 28) if isinstance(pixels, bytes) else pixels
    return np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)


def _class_dropdown(db) -> dict:
    return gr.update(choices=store.class_names(db), value=None)


def _counters(session: LabelSession, db) -> str:
    actions = Counter(d.action for d in session.log)
    labeled = actions["confirm"] + actions["correct"]
    tallies = Counter(d.class_name for d in session.log if d.class_name)
    left = len(store.unlabeled_pool(db))
    line = (f"**This session:** {labeled} labeled · {actions['skip']} skipped · "
            f"{actions['reject']} rejected  |  **prefetched:** {len(session.queue)}  |  "
            f"**unlabeled in pool:** {left:,}")
    if tallies:
        line += "  \n" + " · ".join(f"{name} {n}" for name, n in sorted(tallies.items()))
    return line


def _why(entry: QueueEntry, item: dict) -> str:
    reason = _WHY.get(entry.strategy, entry.strategy)
    score = "" if entry.strategy in ("undo", "grid") else f" (score {entry.score:.3f})"
    size = f" · {item['width']}×{item['height']}" if item.get("width") else ""
    return (f"**Why this item:** {reason}{score}  \n"
            f"item #{entry.item_id} · {item['original_name']}{size} · model {entry.model_version}")


_PHASES = {"queued": "starting", "load": "loading Fashion-MNIST and the labels", "evaluate": "evaluating",
           "register": "saving the new version"}


def job_progress(job: jobs.Job) -> str:
    """'epoch 2/5, batch 30/200' while training, else what the job is doing."""
    if job.phase in ("train", "epoch-end") and job.epochs:
        text = f"epoch {max(job.epoch or 0, 1)}/{job.epochs}"
        if job.batch and job.batches:
            text += f", batch {job.batch}/{job.batches}"
        return text
    return _PHASES.get(job.phase or job.status, job.phase or job.status)


def _waiting_notice(ctx: UIContext, db) -> str:
    """What to show while there is no model: the seed job's progress, or why it failed."""
    job = jobs.active_job(db)
    if job is not None:
        return (f"Training the seed model: {job_progress(job)} ({job.fraction_done:.0%}). "
                "Items appear here when it is done.")
    last = next(iter(jobs.list_jobs(db, limit=1)), None)
    if last is not None and last.status in ("failed", "cancelled"):
        return f"No model yet: the last training job {last.status}: {last.message}"
    return "No model yet: a lead can start the seed training in the Train tab."


def _render(ctx: UIContext, session: LabelSession, db, notice: str = "") -> Panel:
    entry = session.current
    other_class = _class_dropdown(db)
    session.class_count = len(other_class["choices"])
    if entry is None:
        return Panel(session, None, None, None, None, "", "✓ Confirm (Enter)",
                     _counters(session, db), notice, other_class)
    item = store.get_item(db, entry.item_id)
    original = str(ctx.paths.home / item["stored_path"]) if item.get("stored_path") else None
    top3 = {name: prob for name, prob in entry.top3}
    confirm = f"✓ {entry.top3[0][0]}  (Enter)"
    return Panel(session, entry.item_id, original, upscaled(item["pixels"]), top3, _why(entry, item),
                 confirm, _counters(session, db), notice, other_class)


# ---------------------------------------------------------------- the queue

def _release(db, annotator: str, entries: list[QueueEntry]) -> None:
    """Give prefetched items back at once (strategy changed) instead of holding them for LEASE_S."""
    labeling.lease(db, [e.item_id for e in entries], annotator, seconds=0)


def _refill(ctx: UIContext, session: LabelSession, annotator: str) -> None:
    held = {e.item_id for e in session.queue} | ({session.current.item_id} if session.current else set())
    fresh = labeling.next_items(ctx.paths, annotator=annotator, n=FETCH, strategy=session.strategy,
                                class_filter=session.class_filter)
    now = time.monotonic()
    for entry in fresh:
        if entry.item_id not in held:
            session.queue.append(entry)
            session.fetched_at[entry.item_id] = now


def _advance(ctx: UIContext, session: LabelSession, annotator: str) -> None:
    """Put the next usable prefetched entry on screen, refilling the queue when it runs low.

    Entries scored by a model that is no longer active, or whose lease is about to
    expire, are dropped and fetched again.
    """
    active = registry.active_version(ctx.paths.models)
    now = time.monotonic()
    fresh = [e for e in session.queue if e.model_version == active
             and now - session.fetched_at.get(e.item_id, now) < STALE_AFTER_S]
    if len(fresh) != len(session.queue):
        session.queue = deque(fresh)
    if len(session.queue) < REFILL_BELOW and active is not None:
        _refill(ctx, session, annotator)
    _take_next(session)


def _take_next(session: LabelSession) -> None:
    """Move the head of the queue on screen and remember it (undo may bring it back)."""
    session.current = session.queue.popleft() if session.queue else None
    if session.current is not None:
        session.fetched_at.pop(session.current.item_id, None)
        _remember(session, session.current)


def _remember(session: LabelSession, entry: QueueEntry) -> None:
    session.seen[entry.item_id] = entry
    while len(session.seen) > SEEN_KEPT:
        del session.seen[next(iter(session.seen))]


def _show_next(ctx: UIContext, session: LabelSession, db, annotator: str, notice: str = "") -> Panel:
    if registry.active_version(ctx.paths.models) is None:
        session.current = None
        return _render(ctx, session, db, _waiting_notice(ctx, db))
    _advance(ctx, session, annotator)
    if session.current is None:
        notice += (" Nothing left to label with this filter: import more photos or change the class filter."
                   if session.class_filter is not None else
                   " Nothing left to label: import more photos in the Import tab.")
    return _render(ctx, session, db, notice.strip())


def _log(session: LabelSession, db, events: list[store.LabelEvent]) -> None:
    names = store.class_names(db)
    session.log += [Decided(e.id, e.item_id, e.action,
                            names[e.class_id] if e.class_id is not None else None) for e in events]


# ---------------------------------------------------------------- handlers

def load_view(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """First paint of a page: the item on screen, or the next one."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        db = store.open_db(ctx.paths.db)
        if session.current is not None:
            return _render(ctx, session, db)
        return _show_next(ctx, session, db, annotator)


def refresh(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """Timer tick: fill an empty screen once a model or new items exist; pick up new classes."""
    if session is not None and session.current is not None:
        with session.lock:
            db = store.open_db(ctx.paths.db)
            if len(store.list_classes(db)) == session.class_count:
                return Panel(session, *[gr.skip()] * (len(Panel._fields) - 1))
            return _render(ctx, session, db)
    return load_view(ctx, session, request)


def decide_item(ctx: UIContext, session: LabelSession | None, item_id: float | None, action: str,
                class_name: str | int | None, request: gr.Request | None) -> Panel:
    """Record a decision on the item on screen and show the next one.

    action: confirm (class_name empty = the model's top class), correct, skip or reject.
    item_id must be the item on screen: a key pressed for an item that has just
    been replaced is ignored rather than applied to an item nobody looked at.
    """
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        db = store.open_db(ctx.paths.db)
        entry = session.current
        if entry is None:
            return _render(ctx, session, db, "Nothing on screen to decide.")
        if item_id is None or int(item_id) != entry.item_id:
            return _render(ctx, session, db, f"Item #{item_id} is not on screen any more: nothing recorded.")
        if action not in store.DECISIONS:
            raise ActiveLearnError(f"unknown action {action!r}; use one of {', '.join(store.DECISIONS)}")
        class_id = None
        if class_name not in (None, ""):
            class_id = store.resolve_class(db, class_name).id
        elif action == "correct":
            raise ActiveLearnError("a correction needs a class")
        event = labeling.decide(ctx.paths, annotator=annotator, item_id=entry.item_id,
                                action="confirm" if action == "correct" else action,
                                class_id=class_id, entry=entry)
        _log(session, db, [event])
        done = session.log[-1]
        what = f"{done.action} as {done.class_name}" if done.class_name else done.action
        return _show_next(ctx, session, db, annotator, f"#{entry.item_id}: {what}.")


def undo_last(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """Revert this annotator's newest decision and put that item back on screen."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        db = store.open_db(ctx.paths.db)
        reverted = store.undo(db, annotator=annotator)
        if reverted is None:
            return _render(ctx, session, db, "Nothing to undo.")
        session.log = [d for d in session.log if d.event_id != reverted.id]
        entry = session.seen.get(reverted.item_id) or labeling.lookup(ctx.paths, reverted.item_id)
        if entry is None:  # no active model to describe it: the decision is still undone
            return _render(ctx, session, db, f"Undid the decision on #{reverted.item_id}.")
        entry = replace(entry, strategy="undo")
        if session.current is not None and session.current.item_id != entry.item_id:
            session.queue.appendleft(session.current)
        session.queue = deque(e for e in session.queue if e.item_id != entry.item_id)
        labeling.lease(db, [entry.item_id], annotator)
        session.current = entry
        _remember(session, entry)
        return _render(ctx, session, db, f"Undid {reverted.action} on #{reverted.item_id}: it is back on screen.")


def set_queue_options(ctx: UIContext, session: LabelSession | None, strategy: str,
                      class_filter: str | None, request: gr.Request | None) -> Panel:
    """Change the query strategy / class filter: the prefetched queue is released and refetched."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        if strategy not in STRATEGIES:
            raise ActiveLearnError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        db = store.open_db(ctx.paths.db)
        session.strategy = strategy
        session.class_filter = (None if class_filter in (None, "", ALL_CLASSES)
                                else store.resolve_class(db, class_filter).id)
        dropped = list(session.queue) + ([session.current] if session.current else [])
        session.queue.clear()
        session.current = None
        _release(db, annotator, dropped)
        label = class_filter if session.class_filter is not None else "all classes"
        return _show_next(ctx, session, db, annotator, f"Queue: {strategy}, {label}.")


def _picture(paths, item: dict) -> str | np.ndarray:
    """The stored original, or the 28x28 conversion for an item imported without one."""
    return str(paths.home / item["stored_path"]) if item.get("stored_path") else upscaled(item["pixels"])


def _gallery(entries: list[QueueEntry], ticked: set[int], paths) -> list[tuple[str | np.ndarray, str]]:
    """(photo, caption) per grid entry; the caption shows whether it is ticked."""
    db = store.open_db(paths.db)
    return [(_picture(paths, store.get_item(db, e.item_id)),
             f"{'✓' if e.item_id in ticked else '✗'} #{e.item_id} · {e.confidence:.0%}")
            for e in entries]


def load_grid(ctx: UIContext, session: LabelSession | None, class_name: str | None,
              request: gr.Request | None) -> GridView:
    """A page of items the model puts in one class, all ticked."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        if not class_name:
            raise ActiveLearnError("choose the class to review as a grid")
        db = store.open_db(ctx.paths.db)
        cls = store.resolve_class(db, class_name)
        entries = [e for e in labeling.grid_page(ctx.paths, annotator=annotator, class_id=cls.id, n=GRID_SIZE)
                   if session.current is None or e.item_id != session.current.item_id]
        session.grid = entries
        for e in entries:
            _remember(session, e)
        ids = [e.item_id for e in entries]
        notice = (f"{len(entries)} items the model calls **{cls.name}**. Untick (or click) the wrong ones, "
                  "then confirm the page." if entries else f"No unlabeled items predicted as {cls.name}.")
        return GridView(session, _gallery(entries, set(ids), ctx.paths),
                        gr.update(choices=[(f"#{i}", i) for i in ids], value=ids), notice)


def toggle_grid_item(ctx: UIContext, session: LabelSession | None, ticked: list[int] | None,
                     index: int) -> GridView:
    """Clicking a photo flips its tick (no decision is recorded until the page is confirmed)."""
    session = _session(session)
    ticked_set = set(ticked or [])
    if 0 <= index < len(session.grid):
        ticked_set ^= {session.grid[index].item_id}
    order = [e.item_id for e in session.grid if e.item_id in ticked_set]
    return GridView(session, _gallery(session.grid, ticked_set, ctx.paths), order, gr.skip())


def confirm_grid(ctx: UIContext, session: LabelSession | None, ticked: list[int] | None,
                 request: gr.Request | None) -> tuple[Panel, GridView]:
    """Confirm the ticked items in one action; the unticked ones come next on the single-item screen."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        db = store.open_db(ctx.paths.db)
        if not session.grid:
            raise ActiveLearnError("no grid page loaded: choose a class and load a page first")
        events, unticked = labeling.confirm_page(ctx.paths, annotator=annotator, entries=session.grid,
                                                 ticked={int(i) for i in ticked or []})
        _log(session, db, events)
        done = {e.item_id for e in events} | {e.item_id for e in unticked}
        rest = [e for e in session.queue if e.item_id not in done]
        if session.current is not None and session.current.item_id not in done:
            rest.insert(0, session.current)
        session.queue = deque([*unticked, *rest])
        now = time.monotonic()
        for e in unticked:
            session.fetched_at[e.item_id] = now
        _take_next(session)
        class_name = store.class_names(db)[session.grid[0].predicted_class_id]
        session.grid = []
        notice = (f"Confirmed {len(events)} items as {class_name}; {len(unticked)} unticked "
                  f"{'item is' if len(unticked) == 1 else 'items are'} next for correction.")
        panel = (_render(ctx, session, db, notice) if session.current
                 else _show_next(ctx, session, db, annotator, notice))
        return panel, GridView(session, [], gr.update(choices=[], value=[]), notice)


def add_class(ctx: UIContext, session: LabelSession | None, name: str, request: gr.Request | None) -> ClassAdded:
    """Lead only: a new class, usable for labels at once; the next retraining grows the model."""
    ctx.require(request, "classes")
    with _shown_errors():
        db = store.open_db(ctx.paths.db)
        info = store.add_class(db, name or "")
        names = store.class_names(db)
    if session is not None:
        session.class_count = len(names)
    return ClassAdded(gr.update(choices=names, value=None), gr.update(choices=names),
                      gr.update(choices=[ALL_CLASSES, *names]),
                      f"Added class **{info.name}** (output {info.id}); the next retraining learns it.")


# ---------------------------------------------------------------- layout

SHORTCUTS = ("**Keys:** Enter/Space = confirm the model's top class · 1–9, 0 = pick one of the first ten "
             "classes · s = skip · x = not a product / unusable · z or Backspace = undo")


def build(ctx: UIContext, demo: gr.Blocks) -> None:
    """Lay out the Label tab and wire every control to the handlers above."""
    class_names = store.class_names(store.open_db(ctx.paths.db))
    session = gr.State(None)
    notice = gr.Markdown(elem_id="al-notice")
    with gr.Tabs():
        with gr.Tab("One by one", id="single", elem_id="al-label-panel"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    original = gr.Image(label="Original photo", type="filepath", interactive=False,
                                        height=400, buttons=["fullscreen"], elem_id="al-original")
                with gr.Column(scale=3):
                    preview = gr.Image(label="What the model sees (28×28)", type="numpy", format="png",
                                       interactive=False, height=224, width=224, buttons=[],
                                       elem_id="al-preview")
                    top3 = gr.Label(label="Model's top 3", num_top_classes=3, elem_id="al-top3")
                    why = gr.Markdown(elem_id="al-why")
            with gr.Row():
                confirm_btn = gr.Button("✓ Confirm (Enter)", variant="primary", elem_id="al-confirm", scale=3)
                skip_btn = gr.Button("Skip (s)", elem_id="al-skip", scale=1)
                reject_btn = gr.Button("Not a product (x)", variant="stop", elem_id="al-reject", scale=1)
                undo_btn = gr.Button("↶ Undo (z)", elem_id="al-undo", scale=1)
            with gr.Row():
                digit_btns = [gr.Button(f"{key} · {class_names[i]}", size="sm", elem_id=f"al-class-{key}",
                                        min_width=90) for i, key in enumerate(DIGIT_KEYS[:len(class_names)])]
            other_class = gr.Dropdown(class_names, value=None, label="Another class (type to search)",
                                      filterable=True, elem_id="al-other-class")
            counters = gr.Markdown(elem_id="al-counters")
            gr.Markdown(SHORTCUTS, elem_id="al-shortcuts")
        with gr.Tab("Grid", id="grid", elem_id="al-grid-panel"):
            with gr.Row():
                grid_class = gr.Dropdown(class_names, value=class_names[0], label="Class", scale=3,
                                         elem_id="al-grid-class")
                grid_load = gr.Button("Load a page", elem_id="al-grid-load", scale=1)
                grid_confirm = gr.Button("✓ Confirm ticked", variant="primary", elem_id="al-grid-confirm",
                                         scale=1)
            grid_notice = gr.Markdown(elem_id="al-grid-notice")
            with gr.Row(equal_height=False):
                gallery = gr.Gallery(label="Click a photo to untick / tick it", columns=6, height="auto",
                                     allow_preview=False, object_fit="contain", scale=4, elem_id="al-gallery")
                ticked = gr.CheckboxGroup([], value=[], label="Ticked = confirm", scale=1, elem_id="al-ticked")
    with gr.Accordion("Queue options", open=False):
        with gr.Row():
            strategy = gr.Dropdown(list(STRATEGIES), value="margin", label="Query strategy", elem_id="al-strategy")
            class_filter = gr.Dropdown([ALL_CLASSES, *class_names], value=ALL_CLASSES,
                                       label="Only items predicted as", elem_id="al-class-filter")
    with gr.Accordion("Classes (lead)", open=False, visible=False) as classes_box:
        with gr.Row():
            new_class = gr.Textbox(label="New class name", scale=3, elem_id="al-new-class")
            add_btn = gr.Button("Add class", scale=1, elem_id="al-add-class")
        class_message = gr.Markdown()
    shown_id = gr.Number(visible="hidden", precision=0, elem_id="al-item-id")
    api_action = gr.Textbox(visible=False)
    api_class = gr.Textbox(visible=False)
    api_decide = gr.Button(visible=False)
    timer = gr.Timer(POLL_S)

    panel = [session, shown_id, original, preview, top3, why, confirm_btn, counters, notice, other_class]
    grid_view = [session, gallery, ticked, grid_notice]
    quiet = {"show_progress": "hidden"}

    def on_load(session_value, request: gr.Request):
        return (*load_view(ctx, session_value, request), gr.update(visible=ctx.role(request) == "lead"))

    def on_tick(session_value, request: gr.Request):
        return refresh(ctx, session_value, request)

    def on_decide(session_value, item_id, action, class_name, request: gr.Request):
        return decide_item(ctx, session_value, item_id, action, class_name, request)

    def fixed_decision(action: str, class_id: int | None):
        def handler(session_value, item_id, request: gr.Request):
            return decide_item(ctx, session_value, item_id, action, class_id, request)
        return handler

    def on_pick(session_value, item_id, class_name, request: gr.Request):
        return decide_item(ctx, session_value, item_id, "confirm", class_name, request)

    def on_undo(session_value, request: gr.Request):
        return undo_last(ctx, session_value, request)

    def on_options(session_value, strategy_value, filter_value, request: gr.Request):
        return set_queue_options(ctx, session_value, strategy_value, filter_value, request)

    def on_grid(session_value, class_value, request: gr.Request):
        return load_grid(ctx, session_value, class_value, request)

    def on_toggle(session_value, ticked_value, evt: gr.SelectData):
        return toggle_grid_item(ctx, session_value, ticked_value, evt.index)

    def on_ticked(session_value, ticked_value):
        ticked_set = set(ticked_value or [])
        return _gallery(session_value.grid, ticked_set, ctx.paths) if session_value else []

    def on_confirm_page(session_value, ticked_value, request: gr.Request):
        panel_out, grid_out = confirm_grid(ctx, session_value, ticked_value, request)
        return (*panel_out, *grid_out[1:])

    def on_add_class(session_value, name, request: gr.Request):
        return add_class(ctx, session_value, name, request)

    demo.load(on_load, [session], [*panel, classes_box], api_name="label_load", **quiet)
    timer.tick(on_tick, [session], panel, api_visibility="private", **quiet)
    api_decide.click(on_decide, [session, shown_id, api_action, api_class], panel, api_name="decide", **quiet)
    for btn, action in ((confirm_btn, "confirm"), (skip_btn, "skip"), (reject_btn, "reject")):
        btn.click(fixed_decision(action, None), [session, shown_id], panel,
                  api_visibility="undocumented", api_name=f"key_{action}", **quiet)
    for i, btn in enumerate(digit_btns):
        btn.click(fixed_decision("confirm", i), [session, shown_id], panel,
                  api_visibility="undocumented", api_name=f"key_class_{i}", **quiet)
    other_class.input(on_pick, [session, shown_id, other_class], panel, api_visibility="undocumented",
                      api_name="pick_class", **quiet)
    undo_btn.click(on_undo, [session], panel, api_name="undo", **quiet)
    gr.on([strategy.input, class_filter.input], on_options, [session, strategy, class_filter], panel,
          api_name="queue_options", **quiet)
    grid_load.click(on_grid, [session, grid_class], grid_view, api_name="grid_page")
    gallery.select(on_toggle, [session, ticked], grid_view, api_visibility="private", **quiet)
    ticked.input(on_ticked, [session, ticked], gallery, api_visibility="private", **quiet)
    grid_confirm.click(on_confirm_page, [session, ticked], [*panel, gallery, ticked, grid_notice],
                       api_name="confirm_page")
    add_btn.click(on_add_class, [session, new_class], [other_class, grid_class, class_filter, class_message],
                  api_name="add_class")
