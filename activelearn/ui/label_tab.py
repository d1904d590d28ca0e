"""The annotator's screen: the next uncertain item, decided by one click or one key.

Each browser tab keeps a `label_session.LabelSession` in gr.State: the item on
screen and the prefetched entries leased to this annotator. Deciding records
the event, then shows the next prefetched entry at once. The handlers below
are module-level so tests call them directly; `build` only wires them to
components. Every state-changing handler checks the role first.

Keys are set in one place, KEYMAP and CLASS_KEYS below; the buttons and the
legend on screen are built from them. By default (Prodigy's, plus the earlier
keys that do not clash): a or Enter accept the model's class, Space or s skip,
x reject (not a product), Backspace or z undo, 1-9 and 0 pick the first ten
classes and letters the next ones, / opens the class finder (type, ↓ ↑ choose,
Enter records, Esc leaves). Keys never act while a text field has focus, and
Esc leaves any field. Buttons, keys and the finder pass class *ids*, never
names, and a decision is only recorded by a key press or a click.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from activelearn import jobs, labeling, registry, store
from activelearn.errors import ActiveLearnError
from activelearn.label_session import LabelSession
from activelearn.labeling import QueueEntry
from activelearn.ui.context import UIContext

STRATEGIES = ("margin", "entropy", "least-confidence", "diverse", "random")
ALL_CLASSES = "All classes"
GRID_SIZE = 18
ZOOM = 8              # 28x28 shown as 224x224, nearest neighbour
POLL_S = 2.0

#: Shortcut key -> command: Prodigy's keys (a accept, x reject, Space skip, Backspace undo) plus the
#: earlier ones that do not clash. The one place to change keys: buttons, legend and key handler read it.
KEYMAP: dict[str, str] = {"a": "accept", "Enter": "accept", " ": "skip", "s": "skip", "x": "reject",
                          "Backspace": "undo", "z": "undo", "/": "find"}
#: The i-th character picks class id i: 1-9 and 0 for the first ten, then letters KEYMAP leaves free.
#: Classes beyond these keys are reached with the finder ("/").
CLASS_KEYS = "1234567890qwertyuiopdfghjklcvbnm"
#: Command -> elem_id of the button its key clicks ("find" focuses the class finder instead).
COMMAND_BUTTONS = {"accept": "al-confirm", "skip": "al-skip", "reject": "al-reject", "undo": "al-undo"}
_KEY_NAMES = {" ": "Space"}
_COMMANDS = (("accept", "accept the model's class"), ("skip", "skip"), ("reject", "not a product / unusable"),
             ("undo", "undo"), ("find", "find a class: type, ↓ ↑ choose, Enter records, Esc leaves"))

#: The single-item panel's elem_id; the key handler only acts while it is on screen.
PANEL_ID = "al-single-panel"
FINDER_HELP = "type part of a class name; ↓ ↑ choose, Enter records, Esc leaves"
FINDER_HTML = ('<label for="al-class-search">Find a class (/)</label> '
               '<input id="al-class-search" type="text" autocomplete="off" spellcheck="false" '
               'placeholder="part of a class name, then Enter" style="width: 18em; padding: 4px 8px; '
               'border: 1px solid var(--border-color-primary); border-radius: 6px"> '
               f'<span id="al-class-hint" role="status">{FINDER_HELP}</span>')

#: The key handler, installed once per page. In a text field only Esc acts (it leaves the field);
#: the finder filters the class buttons as one types and records only on Enter, with the very
#: button it outlines, so nothing is ever recorded by leaving a field.
KEYS_JS = r"""
() => {
  if (window.__activelearnLabelKeys) return;
  window.__activelearnLabelKeys = true;
  const KEYMAP = __KEYMAP__, BUTTONS = __BUTTONS__, CLASS_KEYS = __CLASS_KEYS__;
  const PANEL = __PANEL__, FINDER = "al-class-search", HINT = "al-class-hint";
  const HELP = __HELP__;
  let chosen = -1;  // position in the matches picked with ↓ ↑; -1 = none picked yet

  const onScreen = (el) => !!el && el.offsetParent !== null;
  const isField = (el) => !!el && (["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable);
  const finder = () => document.getElementById(FINDER);
  const classButtons = () => [...document.querySelectorAll("#al-class-buttons button")]
    .filter((b) => /^al-class-\d+$/.test(b.id));
  const classId = (b) => Number(b.id.slice("al-class-".length));
  const className = (b) => {
    const label = b.textContent.trim();
    return classId(b) < CLASS_KEYS.length ? label.slice(label.indexOf(" · ") + 3) : label;
  };
  const hint = (text) => { const el = document.getElementById(HINT); if (el) el.textContent = text; };

  // Class buttons whose name contains the text, best first: exact, then starting with it, then the rest.
  function matches(text) {
    const query = text.trim().toLowerCase();
    if (!query) return [];
    const rank = (name) => (name === query ? 0 : name.startsWith(query) ? 1 : 2);
    return classButtons().map((b) => [b, className(b).toLowerCase()])
      .filter(([, name]) => name.includes(query))
      .sort((x, y) => rank(x[1]) - rank(y[1]) || classId(x[0]) - classId(y[0]))
      .map(([b]) => b);
  }
  // What Enter records: the match picked with ↓ ↑, else the only match, else an exact name; or nothing.
  function target(found, text) {
    if (chosen >= 0) return found[chosen];
    if (found.length === 1) return found[0];
    return found.find((b) => className(b).toLowerCase() === text.trim().toLowerCase()) || null;
  }
  // Show only the matching class buttons, best first, and outline the one Enter would record.
  function filter() {
    const text = finder() ? finder().value : "";
    const found = matches(text);
    const pick = target(found, text);
    for (const b of classButtons()) {
      const at = found.indexOf(b);
      b.style.display = text.trim() && at < 0 ? "none" : "";
      b.style.order = at < 0 ? "" : String(at);
      b.style.outline = b === pick ? "3px solid var(--color-accent)" : "";
    }
    if (!text.trim()) hint(HELP);
    else if (!found.length) hint(`no class matches "${text.trim()}"`);
    else if (pick) hint(`Enter records ${className(pick)}`);
    else hint(`${found.length} classes match: ↓ ↑ choose one, then Enter`);
    return [found, pick];
  }
  function reset(message) {
    if (finder()) finder().value = "";
    chosen = -1;
    filter();
    if (message) hint(message);
  }
  function finderKey(event, box) {
    const [found, pick] = filter();
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (found.length) {
        chosen = event.key === "ArrowDown" ? Math.min(chosen + 1, found.length - 1) : Math.max(chosen - 1, 0);
      }
      filter();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (!pick) {
        const text = box.value.trim();
        hint(found.length ? `${found.length} classes match "${text}": choose one with ↓ ↑ first. Nothing recorded.`
                          : `No class matches "${text}": nothing recorded.`);
        return;
      }
      reset();
      box.blur();
      pick.click();
    } else if (event.key === "Escape") {
      event.preventDefault();
      box.blur();
    }
  }

  document.addEventListener("input", (event) => {
    if (event.target.id === FINDER) { chosen = -1; filter(); }
  });
  // Leaving the finder records nothing; a class button taking the focus is about to be clicked.
  document.addEventListener("focusout", (event) => {
    if (event.target.id !== FINDER || classButtons().includes(event.relatedTarget)) return;
    const text = event.target.value.trim();
    reset(text ? `"${text}" left without Enter: nothing recorded` : "");
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button");
    if (button && classButtons().includes(button)) reset();
  });
  window.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !onScreen(document.getElementById(PANEL))) return;
    const el = event.target;
    if (el && el.id === FINDER) { finderKey(event, el); return; }
    if (isField(el)) {
      if (event.key === "Escape") el.blur();
      return;
    }
    if (event.repeat) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const command = KEYMAP[key];
    if (command === "find") {
      if (!finder()) return;
      event.preventDefault();
      finder().focus();
      filter();
      return;
    }
    const id = command ? BUTTONS[command]
      : key.length === 1 && CLASS_KEYS.includes(key) ? "al-class-" + CLASS_KEYS.indexOf(key) : null;
    const button = id && document.getElementById(id);
    if (!button || button.disabled) return;
    event.preventDefault();
    if (el && el.tagName === "BUTTON") el.blur();
    button.click();
  }, true);
}
"""


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
    classes: Any          # class names by id: the class buttons and the key legend are drawn from it


class GridView(NamedTuple):
    session: LabelSession
    gallery: Any
    ticked: Any
    grid_notice: Any


class ClassAdded(NamedTuple):
    classes: tuple[str, ...]
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


# ---------------------------------------------------------------- keys

def keys_for(command: str) -> str:
    """The keys bound to a command, as its button and the legend show them."""
    return ", ".join(_KEY_NAMES.get(key, key) for key, bound in KEYMAP.items() if bound == command)


def class_key(class_id: int) -> str | None:
    return CLASS_KEYS[class_id] if class_id < len(CLASS_KEYS) else None


def class_button_label(class_id: int, name: str) -> str:
    key = class_key(class_id)
    return f"{key} · {name}" if key else name


def key_legend(names: Sequence[str]) -> str:
    """The keymap on screen: the commands, then every class that has a key."""
    commands = " · ".join(f"{keys_for(command)} = {what}" for command, what in _COMMANDS)
    classes = " · ".join(f"{class_key(i)} {name}" for i, name in enumerate(names) if class_key(i))
    rest = len(names) - len(CLASS_KEYS)
    if rest > 0:
        classes += f" · the other {rest} classes: {keys_for('find')} finds them"
    return f"**Keys:** {commands}  \n**Class keys:** {classes}"


def keys_js() -> str:
    """KEYS_JS with the keymap filled in."""
    return (KEYS_JS.replace("__KEYMAP__", json.dumps(KEYMAP)).replace("__BUTTONS__", json.dumps(COMMAND_BUTTONS))
            .replace("__CLASS_KEYS__", json.dumps(CLASS_KEYS)).replace("__PANEL__", json.dumps(PANEL_ID))
            .replace("__HELP__", json.dumps(FINDER_HELP)))


# ---------------------------------------------------------------- rendering

def upscaled(pixels: bytes | np.ndarray, zoom: int = ZOOM) -> np.ndarray:
    """The 28x28 conversion enlarged by pixel repetition, so the annotator sees what the model sees."""
    image = np.frombuffer(pixels, np.uint8).reshape(28, 28) if isinstance(pixels, bytes) else pixels
    return np.repeat(np.repeat(image, zoom, axis=0), zoom, axis=1)


def _names(db) -> dict[int, str]:
    return {c.id: c.name for c in store.list_classes(db)}


def _class_choices(db) -> list[tuple[str, int]]:
    """(name, id) dropdown choices: a dropdown hands back the id, never a name to be re-resolved."""
    return [(name, class_id) for class_id, name in _names(db).items()]


def _counters(session: LabelSession, db) -> str:
    """labels.db's counts, from store.status like the header's, and what this tab holds."""
    counts = store.status(db).as_dict()
    per_class: Counter = Counter()
    for split_counts in counts["labeled_per_class"].values():
        per_class.update(split_counts)
    line = (f"**labels.db:** {counts['labeled']:,} labeled · {counts['skipped']:,} skipped · "
            f"{counts['rejected']:,} rejected · {counts['unlabeled_pool']:,} unlabeled in pool  |  "
            f"**prefetched for you:** {len(session.queue)}")
    if per_class:
        line += "  \n" + " · ".join(f"{name} {n:,}" for name, n in sorted(per_class.items()))
    return line


def _why(entry: QueueEntry, item: dict) -> str:
    """Why the item is on screen, with the model's numbers that put it there."""
    top = entry.top3
    says = f"the model says {top[0][0]} {top[0][1]:.0%}"
    two = f"top two {top[0][1]:.0%} vs {top[1][1]:.0%} ({top[0][0]} vs {top[1][0]})"
    reasons = {
        "margin": f"margin: {two}, among the closest calls left",
        "diverse": f"diverse: {two}, and unlike the rest of its batch",
        "entropy": f"entropy {entry.score:.2f} nats, spread over " + ", ".join(f"{n} {p:.0%}" for n, p in top),
        "least-confidence": f"least confidence: the top class, {top[0][0]}, has only {top[0][1]:.0%}",
        labeling.COLD_START: f"cold start: picked to cover the photos (k-center over their embeddings), "
                             f"not by uncertainty; {says}",
        "random": f"picked at random (random strategy); {says}",
        "audit": f"**audit**: picked at random, not by uncertainty, so the model is also checked where "
                 f"it is sure; {says}",
        "grid": f"unticked on a grid page: {says}; pick the right class",
        "undo": f"brought back by undo; {says}",
    }
    # audit items (holdout draws among them) all read alike, so an annotator cannot tell them apart
    strategy = "audit" if entry.is_audit and entry.strategy != "undo" else entry.strategy
    reason = reasons.get(strategy, f"{strategy}; {says}")
    size = f" · {item['width']}×{item['height']}" if item.get("width") else ""
    return (f"**Why this item:** {reason}  \n"
            f"item #{entry.item_id} · {item['original_name']}{size} · model {entry.model_version}")


def _what(event: store.LabelEvent, names: dict[int, str]) -> str:
    """A stored decision in words: 'correct → Shirt', 'skip'."""
    return f"{event.action} → {names[event.class_id]}" if event.class_id is not None else event.action


def _stored(event: store.LabelEvent, names: dict[int, str], entry: QueueEntry) -> str:
    """The notice after a decision: what labels.db now holds for the item, not what was asked for."""
    said = f" (the model said {entry.top3[0][0]})" if event.action == "correct" else ""
    return f"Stored #{event.item_id}: {_what(event, names)}{said}."


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
    names = tuple(store.class_names(db))
    session.class_count = len(names)
    entry = session.current
    counters = _counters(session, db)
    if entry is None:
        return Panel(session, None, None, None, None, "", f"✓ Accept ({keys_for('accept')})", counters, notice,
                     names)
    item = store.get_item(db, entry.item_id)
    original = str(ctx.paths.home / item["stored_path"]) if item.get("stored_path") else None
    top3 = {name: prob for name, prob in entry.top3}
    confirm = f"✓ {entry.top3[0][0]}  ({keys_for('accept')})"
    return Panel(session, entry.item_id, original, upscaled(item["pixels"]), top3, _why(entry, item),
                 confirm, counters, notice, names)


def _show_next(ctx: UIContext, session: LabelSession, db, annotator: str, notice: str = "") -> Panel:
    if registry.active_version(ctx.paths.models) is None:
        session.current = None
        return _render(ctx, session, db, _waiting_notice(ctx, db))
    session.advance(ctx.paths, annotator)
    if session.current is None:
        notice += (" Nothing left to label with this filter: import more photos or change the class filter."
                   if session.class_filter is not None else
                   " Nothing left to label: import more photos in the Import tab.")
    return _render(ctx, session, db, notice.strip())


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
    """Timer tick: fill an empty screen once a model or new items exist; pick up new classes and
    other annotators' decisions in the counters."""
    if session is not None and session.current is not None:
        with session.lock:
            db = store.open_db(ctx.paths.db)
            if len(store.list_classes(db)) != session.class_count:
                return _render(ctx, session, db)
            skip = gr.skip()
            return Panel(session, skip, skip, skip, skip, skip, skip, _counters(session, db), skip, skip)
    return load_view(ctx, session, request)


def decide_item(ctx: UIContext, session: LabelSession | None, item_id: float | None, action: str,
                class_id: int | None, request: gr.Request | None) -> Panel:
    """Record a decision on the item on screen and show the next one.

    action: confirm (no class = the model's top class), correct, skip or reject; class_id
    is a class id (buttons and keys pass ids, so a class *named* "3" cannot be mistaken
    for id 3). item_id must be the item on screen: a key pressed for an item that has
    just been replaced is ignored rather than applied to an item nobody looked at.
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
        names = _names(db)
        if class_id is not None and class_id not in names:
            raise ActiveLearnError(f"unknown class id {class_id}; ids run from 0 to {max(names)}")
        if action == "correct" and class_id is None:
            raise ActiveLearnError("a correction needs a class")
        event = labeling.decide(ctx.paths, annotator=annotator, item_id=entry.item_id,
                                action="confirm" if action == "correct" else action,
                                class_id=class_id, entry=entry)
        return _show_next(ctx, session, db, annotator, _stored(event, names, entry))


def class_id_of(db, text: str | None) -> int | None:
    """A class given as text (the /decide endpoint): empty = none, digits = a class id, else a name."""
    text = (text or "").strip()
    if not text:
        return None
    return int(text) if text.isdigit() else store.resolve_class(db, text).id


def decide_from_api(ctx: UIContext, session: LabelSession | None, item_id: float | None, action: str,
                    class_text: str | None, request: gr.Request | None) -> Panel:
    """/decide: decide_item with the class given as text (see class_id_of)."""
    ctx.require(request, "label")
    with _shown_errors():
        class_id = class_id_of(store.open_db(ctx.paths.db), class_text)
    return decide_item(ctx, session, item_id, action, class_id, request)


def undo_last(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """Revert this annotator's newest decision and put that item back on screen."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        db = store.open_db(ctx.paths.db)
        reverted = store.undo(db, annotator=annotator)
        if reverted is None:
            return _render(ctx, session, db, "Nothing to undo.")
        undone = f"Undid {_what(reverted, _names(db))} on #{reverted.item_id}"
        entry = session.seen.get(reverted.item_id) or labeling.lookup(ctx.paths, reverted.item_id)
        if entry is None:  # no active model to describe it: the decision is still undone
            return _render(ctx, session, db, f"{undone}.")
        session.bring_back(db, annotator, entry)
        return _render(ctx, session, db, f"{undone}: it is back on screen.")


def set_queue_options(ctx: UIContext, session: LabelSession | None, strategy: str,
                      class_filter: int | str | None, request: gr.Request | None) -> Panel:
    """Change the query strategy / class filter (a class id): the prefetched queue is released and refetched."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        if strategy not in STRATEGIES:
            raise ActiveLearnError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        db = store.open_db(ctx.paths.db)
        names = _names(db)
        class_id = None if class_filter in (None, "", ALL_CLASSES) else int(class_filter)
        if class_id is not None and class_id not in names:
            raise ActiveLearnError(f"unknown class id {class_id}; ids run from 0 to {max(names)}")
        if (strategy, class_id) == (session.strategy, session.class_filter) and session.current is not None:
            return _render(ctx, session, db)  # a dropdown re-sends its value when it loses focus: keep the item
        session.strategy, session.class_filter = strategy, class_id
        session.release(db, annotator)
        label = names[class_id] if class_id is not None else "all classes"
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


def load_grid(ctx: UIContext, session: LabelSession | None, class_id: int | None,
              request: gr.Request | None) -> GridView:
    """A page of items the model puts in one class (a class id), all ticked."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, _shown_errors():
        if class_id is None:
            raise ActiveLearnError("choose the class to review as a grid")
        db = store.open_db(ctx.paths.db)
        names = _names(db)
        if class_id not in names:
            raise ActiveLearnError(f"unknown class id {class_id}; ids run from 0 to {max(names)}")
        entries = [e for e in labeling.grid_page(ctx.paths, annotator=annotator, class_id=class_id, n=GRID_SIZE)
                   if session.current is None or e.item_id != session.current.item_id]
        session.grid = entries
        for e in entries:
            session.remember(e)
        ids = [e.item_id for e in entries]
        name = names[class_id]
        notice = (f"{len(entries)} items the model calls **{name}**. Untick (or click) the wrong ones, "
                  "then confirm the page." if entries else f"No unlabeled items predicted as {name}.")
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
        session.after_grid({e.item_id for e in events}, unticked)
        class_name = _names(db)[session.grid[0].predicted_class_id]
        session.grid = []
        notice = (f"Confirmed {len(events)} items as {class_name}; {len(unticked)} unticked "
                  f"{'item is' if len(unticked) == 1 else 'items are'} next for correction.")
        panel = (_render(ctx, session, db, notice) if session.current
                 else _show_next(ctx, session, db, annotator, notice))
        return panel, GridView(session, [], gr.update(choices=[], value=[]), notice)


def add_class(ctx: UIContext, session: LabelSession | None, name: str, request: gr.Request | None) -> ClassAdded:
    """Lead only: a new class, with its button and key at once; the next retraining grows the model."""
    ctx.require(request, "classes")
    with _shown_errors():
        db = store.open_db(ctx.paths.db)
        info = store.add_class(db, name or "")
        choices = _class_choices(db)
    if session is not None:
        session.class_count = len(choices)
    key = class_key(info.id)
    reach = f"key **{key}**" if key else f"the finder ({keys_for('find')})"
    return ClassAdded(tuple(name for name, _ in choices), gr.update(choices=choices),
                      gr.update(choices=[(ALL_CLASSES, ALL_CLASSES), *choices]),
                      f"Added class **{info.name}** (output {info.id}, {reach}); the next retraining learns it.")


def grad_cam(ctx: UIContext, item_id: float | None, on: bool, request: gr.Request | None) -> tuple:
    """(overlay image update, caption): the active model's Grad-CAM for the item on screen, when toggled on."""
    ctx.require(request, "label")
    if not on or not item_id:
        return gr.update(value=None, visible=bool(on)), ""
    from activelearn.explain import explain_item
    with _shown_errors():
        explained = explain_item(ctx.paths, int(item_id))
    caption = (f"Grad-CAM of **{explained.class_name}** ({explained.probability:.0%}) by {explained.version} "
               f"({explained.kind}, {explained.layer}) in {explained.seconds * 1000:.0f} ms")
    return gr.update(value=explained.overlay, visible=True), caption


# ---------------------------------------------------------------- layout

def _page_header(demo: gr.Blocks) -> gr.HTML:
    """The app's header (activelearn.ui builds it before this tab): every decision refreshes its counts."""
    for block in demo.blocks.values():
        if getattr(block, "elem_id", None) == "al-header":
            return block
    raise ActiveLearnError("the Label tab needs the page header (elem_id al-header) built before it")


def build(ctx: UIContext, demo: gr.Blocks) -> None:
    """Lay out the Label tab and wire every control to the handlers above."""
    from activelearn.ui import header_html  # activelearn.ui imports this module, so not at the top

    header = _page_header(demo)
    db = store.open_db(ctx.paths.db)
    choices = _class_choices(db)
    session = gr.State(None)
    classes = gr.State(tuple(name for name, _ in choices))
    notice = gr.Markdown(elem_id="al-notice")
    quiet = {"show_progress": "hidden"}
    with gr.Tabs():
        with gr.Tab("One by one", id="single", elem_id=PANEL_ID):
            with gr.Row(equal_height=False):
                with gr.Column(scale=5):
                    gr.Markdown("**Original photo**")
                    original = gr.Image(show_label=False, type="filepath", interactive=False, height=400,
                                        buttons=["fullscreen"], elem_id="al-original")
                with gr.Column(scale=3):
                    gr.Markdown("**What the model sees:** the 28×28 conversion, enlarged")
                    preview = gr.Image(show_label=False, type="numpy", format="png", interactive=False,
                                       height=224, width=224, buttons=[], elem_id="al-preview")
                    top3 = gr.Label(label="Model's top 3", num_top_classes=3, elem_id="al-top3")
                    why = gr.Markdown(elem_id="al-why")
                    cam_on = gr.Checkbox(False, label="Show where the model looked (Grad-CAM)",
                                         elem_id="al-cam-toggle")
                    cam = gr.Image(show_label=False, type="pil", format="png", interactive=False, height=224,
                                   buttons=[], visible=False, elem_id="al-cam")
                    cam_note = gr.Markdown(elem_id="al-cam-note")
            with gr.Row():
                confirm_btn = gr.Button(f"✓ Accept ({keys_for('accept')})", variant="primary",
                                        elem_id=COMMAND_BUTTONS["accept"], scale=2)
                skip_btn = gr.Button(f"Skip ({keys_for('skip')})", elem_id=COMMAND_BUTTONS["skip"], scale=1)
                reject_btn = gr.Button(f"Not a product ({keys_for('reject')})", variant="stop",
                                       elem_id=COMMAND_BUTTONS["reject"], scale=1)
                undo_btn = gr.Button(f"↶ Undo ({keys_for('undo')})", elem_id=COMMAND_BUTTONS["undo"], scale=1)

            @gr.render(inputs=[classes])
            def class_buttons(names: Sequence[str]) -> None:
                """A button per class, labeled with its key; drawn again when a class is added."""
                with gr.Row(elem_id="al-class-buttons"):
                    for class_id, name in enumerate(names):
                        gr.Button(class_button_label(class_id, name), size="sm", min_width=90,
                                  elem_id=f"al-class-{class_id}").click(
                            fixed_decision("confirm", class_id), [session, shown_id], panel,
                            api_visibility="private", **quiet)
                gr.Markdown(key_legend(names), elem_id="al-keys")

            gr.HTML(FINDER_HTML, js_on_load=None, elem_id="al-class-finder")
            counters = gr.Markdown(elem_id="al-counters")
        with gr.Tab("Grid", id="grid", elem_id="al-grid-panel"):
            with gr.Row():
                grid_class = gr.Dropdown(choices, value=choices[0][1], label="Class", scale=3,
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
            class_filter = gr.Dropdown([(ALL_CLASSES, ALL_CLASSES), *choices], value=ALL_CLASSES,
                                       label="Only items predicted as", elem_id="al-class-filter")
    with gr.Accordion("Classes (lead)", open=False, visible=False) as classes_box:
        with gr.Row():
            new_class = gr.Textbox(label="New class name", scale=3, elem_id="al-new-class")
            add_btn = gr.Button("Add class", scale=1, elem_id="al-add-class")
        class_message = gr.Markdown(elem_id="al-class-message")
    shown_id = gr.Number(visible="hidden", precision=0, elem_id="al-item-id")
    api_action = gr.Textbox(visible=False)
    api_class = gr.Textbox(visible=False)
    api_decide = gr.Button(visible=False)
    timer = gr.Timer(POLL_S)

    panel = [session, shown_id, original, preview, top3, why, confirm_btn, counters, notice, classes, header]
    grid_view = [session, gallery, ticked, grid_notice]

    def shown(view: Panel, request: gr.Request) -> tuple:
        """A panel plus the header, so both show the counts of the same moment."""
        return (*view, header_html(ctx, request))

    def on_load(session_value, request: gr.Request):
        return (*shown(load_view(ctx, session_value, request), request),
                gr.update(visible=ctx.role(request) == "lead"))

    def on_tick(session_value, request: gr.Request):
        return shown(refresh(ctx, session_value, request), request)

    def on_decide(session_value, item_id, action, class_text, request: gr.Request):
        return shown(decide_from_api(ctx, session_value, item_id, action, class_text, request), request)

    def fixed_decision(action: str, class_id: int | None):
        def handler(session_value, item_id, request: gr.Request):
            return shown(decide_item(ctx, session_value, item_id, action, class_id, request), request)
        return handler

    def on_undo(session_value, request: gr.Request):
        return shown(undo_last(ctx, session_value, request), request)

    def on_options(session_value, strategy_value, filter_value, request: gr.Request):
        return shown(set_queue_options(ctx, session_value, strategy_value, filter_value, request), request)

    def on_grid(session_value, class_value, request: gr.Request):
        return load_grid(ctx, session_value, class_value, request)

    def on_toggle(session_value, ticked_value, evt: gr.SelectData):
        return toggle_grid_item(ctx, session_value, ticked_value, evt.index)

    def on_ticked(session_value, ticked_value):
        ticked_set = set(ticked_value or [])
        return _gallery(session_value.grid, ticked_set, ctx.paths) if session_value else []

    def on_confirm_page(session_value, ticked_value, request: gr.Request):
        panel_out, grid_out = confirm_grid(ctx, session_value, ticked_value, request)
        return (*shown(panel_out, request), *grid_out[1:])

    def on_add_class(session_value, name, request: gr.Request):
        return add_class(ctx, session_value, name, request)

    def on_cam(item_id, on, request: gr.Request):
        return grad_cam(ctx, item_id, on, request)

    cam_on.change(on_cam, [shown_id, cam_on], [cam, cam_note], api_name="grad_cam", **quiet)
    shown_id.change(on_cam, [shown_id, cam_on], [cam, cam_note], api_visibility="private", **quiet)
    demo.load(None, None, None, js=keys_js())
    demo.load(on_load, [session], [*panel, classes_box], api_name="label_load", **quiet)
    timer.tick(on_tick, [session], panel, api_visibility="private", **quiet)
    api_decide.click(on_decide, [session, shown_id, api_action, api_class], panel, api_name="decide", **quiet)
    for btn, action in ((confirm_btn, "confirm"), (skip_btn, "skip"), (reject_btn, "reject")):
        btn.click(fixed_decision(action, None), [session, shown_id], panel,
                  api_visibility="undocumented", api_name=f"key_{action}", **quiet)
    undo_btn.click(on_undo, [session], panel, api_name="undo", **quiet)
    gr.on([strategy.input, class_filter.input], on_options, [session, strategy, class_filter], panel,
          api_name="queue_options", **quiet)
    grid_load.click(on_grid, [session, grid_class], grid_view, api_name="grid_page")
    gallery.select(on_toggle, [session, ticked], grid_view, api_visibility="private", **quiet)
    ticked.input(on_ticked, [session, ticked], gallery, api_visibility="private", **quiet)
    grid_confirm.click(on_confirm_page, [session, ticked], [*panel, gallery, ticked, grid_notice],
                       api_name="confirm_page")
    add_btn.click(on_add_class, [session, new_class], [classes, grid_class, class_filter, class_message],
                  api_name="add_class")
