"""The annotator's screen: the next uncertain item, decided by one click or one key; a grid for bulk work.

Each browser tab keeps a `label_session.LabelSession` in gr.State: the item on
screen, the prefetched entries leased to this annotator and the grid page.
Deciding records the event, then shows the next prefetched entry at once. The
handlers below are module-level so tests call them directly; `build` only wires
them to components. Every state-changing handler checks the role first.

Beside both modes: progress toward the end of the pool (labels.db's counts, and
decisions per hour of labeling for this annotator and for everyone, from
activelearn.progress) and the annotator's last HISTORY_SIZE decisions; clicking
one re-opens that item to change it (a new event; the old one stays in labels.db).

Keys are set in one place, KEYMAP, CLASS_KEYS and GRID_KEYMAP below; the buttons
and the legends on screen are built from them. One by one (Prodigy's keys, plus
the earlier ones that do not clash): a or Enter accept the model's class, Space
or s skip, x reject (not a product), Backspace or z undo, 1-9 and 0 pick the
first ten classes and letters the next ones, / opens the class finder (type,
↓ ↑ choose, Enter records, Esc leaves). Grid: arrows move, Space or x untick
(and tick again), Enter or a confirm the page. Keys never act while a text field
has focus, and Esc leaves any field. Buttons, keys and the finder pass class
*ids*, never names, and a decision is only recorded by a key press or a click.

Grid mode serves pages of GRID_SIZE unlabeled items that the model puts in one
class, the most confident first and similar photos side by side, so a run of
one class is confirmed in one action. A page loads when the grid is opened and
the next one after each confirm. What a confirm stores is exactly the page's
class for exactly the ticked items (the page is named by a token, so a second
press meant for a page already confirmed records nothing); unticked items stay
unlabeled and come first on the one-by-one screen.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import quote

import gradio as gr
import numpy as np

from activelearn import jobs, labeling, progress, store
from activelearn.errors import ActiveLearnError
from activelearn.label_session import LabelSession
from activelearn.labeling import QueueEntry, Workspace
from activelearn.ui.components import ONE_RENDER_AT_A_TIME, job_step, model_view, thumbnail, user_errors
from activelearn.ui.context import UIContext

STRATEGIES = ("margin", "entropy", "least-confidence", "diverse", "random")
ALL_CLASSES = "All classes"
ZOOM = 8              # 28x28 shown as 224x224, nearest neighbour
POLL_S = 2.0
#: API clients (gradio_client always joins the queue) run label events on this many threads at once.
LABEL_WORKERS = 8

GRID_SIZE = 48
GRID_COLUMNS = 8
#: The grid's class choice that takes, page after page, the class with most unlabeled items the model predicts.
LARGEST = "largest"
LARGEST_LABEL = "Largest class first"
#: Decisions listed in the history sidebar.
HISTORY_SIZE = 20
#: The history shows 40x40 icons: thumbnails twice that (sharp on high-DPI screens), not the
#: gallery's 160 px, so the one made per decision decodes and resizes a quarter of the pixels.
HISTORY_THUMB_SIDE = 80
#: Decisions this far back count for the pace (decisions per hour) and the ETA.
PACE_WINDOW = timedelta(hours=12)
#: The strategy of an entry re-opened from the history ("why this item" says so).
HISTORY = "history"

#: Shortcut key -> command: Prodigy's keys (a accept, x reject, Space skip, Backspace undo) plus the
#: earlier ones that do not clash. The one place to change keys: buttons, legend and key handler read it.
KEYMAP: dict[str, str] = {"a": "accept", "Enter": "accept", " ": "skip", "s": "skip", "x": "reject",
                          "Backspace": "undo", "z": "undo", "/": "find"}
#: The i-th character picks class id i: 1-9 and 0 for the first ten, then letters KEYMAP leaves free.
#: Classes beyond these keys are reached with the finder ("/").
CLASS_KEYS = "1234567890qwertyuiopdfghjklcvbnm"
#: Grid mode's keys: move the cursor, untick (or tick again) the photo under it, confirm the page.
GRID_KEYMAP: dict[str, str] = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowUp": "up", "ArrowDown": "down",
                               " ": "toggle", "x": "toggle", "Enter": "confirm", "a": "confirm"}
#: Command -> elem_id of the button its key clicks ("find" focuses the class finder instead).
COMMAND_BUTTONS = {"accept": "al-confirm", "skip": "al-skip", "reject": "al-reject", "undo": "al-undo"}
_KEY_NAMES = {" ": "Space", "ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓"}
_COMMANDS = (("accept", "accept the model's class"), ("skip", "skip"), ("reject", "not a product / unusable"),
             ("undo", "undo"), ("find", "find a class: type, ↓ ↑ choose, Enter records, Esc leaves"))
_GRID_COMMANDS = (("left right up down", "move"), ("toggle", "untick / tick again"),
                  ("confirm", "confirm the ticked photos as the page's class"))

#: elem_ids the key handler reads: it acts only while the single-item panel or the grid is on screen.
PANEL_ID = "al-single-panel"
GRID_ID = "al-grid-panel"
GALLERY_ID = "al-gallery"
TICKED_ID = "al-ticked"
GRID_CONFIRM_ID = "al-grid-confirm"
FINDER_HELP = "type part of a class name; ↓ ↑ choose, Enter records, Esc leaves"
FINDER_HTML = ('<label for="al-class-search">Find a class (/)</label> '
               '<input id="al-class-search" type="text" autocomplete="off" spellcheck="false" '
               'placeholder="part of a class name, then Enter" style="width: 18em; padding: 4px 8px; '
               'border: 1px solid var(--border-color-primary); border-radius: 6px"> '
               f'<span id="al-class-hint" role="status">{FINDER_HELP}</span>')
#: How an unticked grid photo and the keyboard cursor look (added to the page by the key handler).
GRID_CSS = f"""
#{GALLERY_ID} .thumbnail-item {{ position: relative; }}
#{GALLERY_ID} .thumbnail-item.al-unticked img {{ opacity: 0.3; filter: grayscale(1); }}
#{GALLERY_ID} .thumbnail-item.al-unticked {{ outline: 3px solid #dc2626; outline-offset: -3px; }}
#{GALLERY_ID} .thumbnail-item.al-unticked::after {{ content: "✗"; position: absolute; top: 2px; right: 6px;
    color: #dc2626; font-size: 1.6em; font-weight: bold; }}
#{GALLERY_ID} .thumbnail-item.al-cursor {{ box-shadow: 0 0 0 4px var(--color-accent); }}
#{TICKED_ID} label {{ padding: 2px 6px; font-size: 0.85em; }}
#{GALLERY_ID} .fixed-height {{ max-height: none; min-height: 0; }}
"""
#: The history sidebar: one row per decision, thumbnail and words. Plain HTML (a string per update,
#: no files for Gradio to copy), so redrawing it after every decision costs next to nothing.
HISTORY_CSS = """
.al-history { display: flex; flex-direction: column; gap: 3px; width: 100%; }
.al-history-entry { display: flex; align-items: center; gap: 8px; box-sizing: border-box; width: 100%; margin: 0;
    padding: 2px 6px 2px 2px; border: 1px solid var(--border-color-primary); border-radius: 6px;
    background: var(--background-fill-primary); color: var(--body-text-color); font: inherit;
    font-size: var(--text-sm); font-weight: normal; text-align: left; cursor: pointer; }
.al-history-entry:hover, .al-history-entry:focus-visible { border-color: var(--color-accent); }
.al-history-entry img { width: 40px; height: 40px; flex: none; object-fit: contain; background: #fff;
    border-radius: 4px; }
.al-history-label { display: block; font-weight: 600; line-height: 1.25; }
.al-history-meta { display: block; font-size: var(--text-xs); line-height: 1.25; color: var(--body-text-color-subdued); }
.al-history-empty { color: var(--body-text-color-subdued); font-size: var(--text-sm); }
"""
#: On a new item: redraw the Grad-CAM overlay, if it is shown (clicks the hidden al-cam-again button).
CAM_AGAIN_JS = """(item) => {
  const toggle = document.querySelector('#al-cam-toggle input');
  if (toggle && toggle.checked) document.getElementById('al-cam-again')?.click();
}"""
#: A click on a history row sends its position (the server re-opens the decision at it).
HISTORY_JS = """
element.addEventListener('click', (event) => {
  const entry = event.target.closest('[data-index]');
  if (entry) trigger('select', {index: Number(entry.dataset.index), value: Number(entry.dataset.item)});
});
"""

#: The key handler, installed once per page. In a text field only Esc acts (it leaves the field);
#: the finder filters the class buttons as one types and records only on Enter, with the very
#: button it outlines, so nothing is ever recorded by leaving a field. On the grid, a photo's tick
#: is its checkbox in the "Ticked" group, the one value a confirm sends: clicks and keys flip that
#: checkbox and the photos are painted from it, so what is shown is what is confirmed.
KEYS_JS = r"""
() => {
  if (window.__activelearnLabelKeys) return;
  window.__activelearnLabelKeys = true;
  const KEYMAP = __KEYMAP__, BUTTONS = __BUTTONS__, CLASS_KEYS = __CLASS_KEYS__, GRID_KEYMAP = __GRID_KEYMAP__;
  const PANEL = __PANEL__, GRID = __GRID__, GALLERY = __GALLERY__, TICKED = __TICKED__;
  const GRID_CONFIRM = __GRID_CONFIRM__, FINDER = "al-class-search", HINT = "al-class-hint";
  const HELP = __HELP__;
  let chosen = -1;  // position in the matches picked with ↓ ↑; -1 = none picked yet
  let cursor = null;  // item id of the grid photo under the keyboard cursor

  const style = document.createElement("style");
  style.textContent = __GRID_CSS__;
  document.head.appendChild(style);

  const onScreen = (el) => !!el && el.offsetParent !== null;
  const TOGGLES = ["checkbox", "radio", "button", "submit", "reset"];
  const isField = (el) => !!el && (["TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable
    || (el.tagName === "INPUT" && !TOGGLES.includes(el.type)));
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

  // ---- the grid: photos painted from their checkboxes, a cursor moved by the arrows
  const tiles = () => [...document.querySelectorAll(`#${GALLERY} .thumbnail-item`)];
  const tileId = (tile) => { const m = /#(\d+)/.exec(tile.textContent); return m ? m[1] : null; };
  const boxes = () => new Map([...document.querySelectorAll(`#${TICKED} label`)]
    .map((label) => [label.textContent.trim().replace(/^#/, ""), label.querySelector("input")]));
  function paint() {
    const all = tiles(), ticks = boxes();
    if (all.length && !all.some((t) => tileId(t) === cursor)) cursor = tileId(all[0]);
    for (const tile of all) {
      const id = tileId(tile), box = ticks.get(id);
      tile.classList.toggle("al-unticked", !!box && !box.checked);
      tile.classList.toggle("al-cursor", id === cursor);
    }
  }
  function toggle(id) {
    const box = boxes().get(id);
    if (box) box.click();
    paint();
  }
  function move(command) {
    const all = tiles();
    if (!all.length) return;
    const top = Math.round(all[0].getBoundingClientRect().top);
    const columns = Math.max(1, all.filter((t) => Math.round(t.getBoundingClientRect().top) === top).length);
    const at = Math.max(0, all.findIndex((t) => tileId(t) === cursor))
      + {left: -1, right: 1, up: -columns, down: columns}[command];
    const tile = all[Math.min(all.length - 1, Math.max(0, at))];
    cursor = tileId(tile);
    paint();
    tile.scrollIntoView({block: "nearest"});
  }
  function gridKey(event) {
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const command = GRID_KEYMAP[key];
    if (!command) return;
    event.preventDefault();
    if (command === "toggle") {
      if (!event.repeat && cursor) toggle(cursor);
    } else if (command === "confirm") {
      const button = document.getElementById(GRID_CONFIRM);
      if (!event.repeat && button && !button.disabled) button.click();
    } else {
      move(command);
    }
  }
  let painting = false;
  new MutationObserver(() => {
    if (painting) return;
    painting = true;
    requestAnimationFrame(() => { painting = false; if (onScreen(document.getElementById(GRID))) paint(); });
  }).observe(document.body, {childList: true, subtree: true, characterData: true});

  document.addEventListener("input", (event) => {
    if (event.target.id === FINDER) { chosen = -1; filter(); }
  });
  document.addEventListener("change", (event) => {
    if (event.target.closest && event.target.closest(`#${TICKED}`)) paint();
  });
  // Leaving the finder records nothing; a class button taking the focus is about to be clicked.
  document.addEventListener("focusout", (event) => {
    if (event.target.id !== FINDER || classButtons().includes(event.relatedTarget)) return;
    const text = event.target.value.trim();
    reset(text ? `"${text}" left without Enter: nothing recorded` : "");
  });
  document.addEventListener("click", (event) => {
    const tile = event.target.closest && event.target.closest(`#${GALLERY} .thumbnail-item`);
    if (tile) {  // a click on a grid photo flips its tick (and nothing else)
      event.preventDefault();
      event.stopPropagation();
      cursor = tileId(tile);
      toggle(cursor);
      return;
    }
    const button = event.target.closest && event.target.closest("button");
    if (button && classButtons().includes(button)) reset();
  }, true);
  window.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const single = onScreen(document.getElementById(PANEL)), grid = onScreen(document.getElementById(GRID));
    if (!single && !grid) return;
    const el = event.target;
    if (single && el && el.id === FINDER) { finderKey(event, el); return; }
    if (isField(el)) {
      if (event.key === "Escape") el.blur();
      return;
    }
    // a focused button or checkbox would also act on Space / Enter: the key is ours alone
    const focusedControl = el && (el.tagName === "BUTTON" || el.tagName === "INPUT");
    if (grid) {
      if (focusedControl && GRID_KEYMAP[event.key.length === 1 ? event.key.toLowerCase() : event.key]) el.blur();
      gridKey(event);
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
    if (focusedControl) el.blur();
    button.click();
  }, true);
}
"""


class Panel(NamedTuple):
    """The single-item view and the sidebar, in the order of the outputs they update."""

    session: LabelSession
    item_id: Any          # shown item id (guards against keys meant for the previous item)
    original: Any         # file path of the stored original
    preview: Any          # path of a 224x224 PNG: the 28x28 conversion upscaled (components.model_view)
    top3: Any             # {class name: probability}
    why: Any
    confirm_label: Any
    counters: Any
    notice: Any
    classes: Any          # class names by id: the class buttons and the key legend are drawn from it
    progress: Any         # "N of M labeled", pace and ETA
    history: Any          # gallery of this annotator's last decisions
    history_rows: Any     # the decisions that gallery shows, newest first (what a click re-opens)


class GridView(NamedTuple):
    session: LabelSession
    gallery: Any
    ticked: Any           # CheckboxGroup update: the page's item ids, all ticked
    token: Any            # names the page: a confirm for another page records nothing
    grid_notice: Any


class ClassAdded(NamedTuple):
    classes: tuple[str, ...]
    grid_class: Any
    class_filter: Any
    message: str


def _session(session: LabelSession | None) -> LabelSession:
    return session if session is not None else LabelSession()


# ---------------------------------------------------------------- keys

def keys_for(command: str, keymap: dict[str, str] = KEYMAP) -> str:
    """The keys bound to a command (or to several, space-separated), as buttons and legends show them."""
    wanted = command.split()
    return ", ".join(_KEY_NAMES.get(key, key) for key, bound in keymap.items() if bound in wanted)


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


def grid_legend() -> str:
    """Grid mode's keys on screen."""
    keys = " · ".join(f"{keys_for(command, GRID_KEYMAP)} = {what}" for command, what in _GRID_COMMANDS)
    return f"**Grid keys:** {keys} · a click on a photo unticks it (or ticks it again)"


def keys_js() -> str:
    """KEYS_JS with the keymaps, element ids and grid styles filled in."""
    values = {"KEYMAP": KEYMAP, "BUTTONS": COMMAND_BUTTONS, "CLASS_KEYS": CLASS_KEYS, "GRID_KEYMAP": GRID_KEYMAP,
              "PANEL": PANEL_ID, "GRID": GRID_ID, "GALLERY": GALLERY_ID, "TICKED": TICKED_ID,
              "GRID_CONFIRM": GRID_CONFIRM_ID, "HELP": FINDER_HELP, "GRID_CSS": GRID_CSS}
    script = KEYS_JS
    for name, value in values.items():
        script = script.replace(f"__{name}__", json.dumps(value))
    return script


# ---------------------------------------------------------------- progress and history

def progress_text(counts: dict, decisions: Sequence[tuple[str, str]], annotator: str, now: datetime) -> str:
    """'N of M labeled', everyone's pace and ETA, then this annotator's, from store.status counts and
    (annotator, time) decisions within PACE_WINDOW. Pure, so a test gives it made-up decisions."""
    team = progress.paces(decisions)
    remaining = counts["unlabeled_pool"]
    items = sum(counts["items"].values())
    hours = PACE_WINDOW.total_seconds() / 3600
    lines = ["**Progress:** " + progress.goal_line(counts["labeled"], items, progress.eta(remaining, team, now))]
    mine = next((pace for pace in team if pace.annotator == annotator), None)
    if mine is None or mine.per_hour is None:
        done = mine.decisions if mine else 0
        lines.append(f"**You ({annotator}):** {done} decisions in the last {hours:.0f} h · no pace yet")
    else:
        alone = progress.eta(remaining, [mine], now)
        lines.append(f"**You ({annotator}):** {mine.decisions} decisions in the last {hours:.0f} h · "
                     f"{mine.per_hour:.0f}/h over {progress.duration_text(mine.active_s)} of labeling · "
                     f"alone at this pace, the pool takes about {progress.duration_text(alone.seconds)}")
    others = [f"{pace.annotator} {pace.per_hour:.0f}/h" for pace in team
              if pace.annotator != annotator and pace.per_hour]
    if others:
        lines.append("**Others:** " + " · ".join(others))
    return "  \n".join(lines)


def _progress(db, counts: dict, annotator: str) -> str:
    moment = datetime.now(timezone.utc)
    since = (moment - PACE_WINDOW).isoformat(timespec="milliseconds")
    return progress_text(counts, store.decision_times(db, since=since), annotator, moment)


def _clock(stored: str) -> str:
    """A stored UTC timestamp in the server's local time: '14:02:31', or '3 Mar 14:02' on another day."""
    moment = datetime.fromisoformat(stored).astimezone()
    return moment.strftime("%H:%M:%S") if moment.date() == datetime.now().astimezone().date() \
        else moment.strftime("%d %b %H:%M").lstrip("0")


def _decision_words(row: dict) -> str:
    """'correct → Shirt', 'skip', 'reject': a history row as the notices word decisions."""
    return f"{row['action']} → {row['class_name']}" if row["class_name"] is not None else row["action"]


def _history(ctx: UIContext, db, annotator: str) -> tuple[str, list[dict]]:
    """(HTML, rows): this annotator's last decisions, newest first; one changed since says so."""
    rows = store.recent_decisions(db, annotator=annotator, limit=HISTORY_SIZE)
    if not rows:
        return "<p class='al-history-empty'>No decisions yet.</p>", rows
    newer: set[int] = set()
    entries = []
    for index, row in enumerate(rows):
        label = {"skip": "skipped", "reject": "not a product"}.get(row["action"], row["class_name"])
        meta = f"#{row['item_id']} · {row['action']} · {_clock(row['created_at'])}"
        if row["item_id"] in newer:
            meta += " (changed)"
        newer.add(row["item_id"])
        picture = thumbnail(ctx.paths, {"id": row["item_id"], "sha256": row["sha256"],   # no query per entry
                                        "stored_path": row["stored_path"]}, HISTORY_THUMB_SIDE)
        entries.append(f'<button type="button" class="al-history-entry" data-index="{index}" '
                       f'data-item="{row["item_id"]}" title="{html.escape(_decision_words(row))}: click to change">'
                       f'<img src="gradio_api/file={html.escape(quote(picture))}" alt="">'
                       f'<span><span class="al-history-label">{html.escape(label)}</span>'
                       f'<span class="al-history-meta">{html.escape(meta)}</span></span></button>')
    return f"<div class='al-history'>{''.join(entries)}</div>", rows


# ---------------------------------------------------------------- rendering

def _names(db) -> dict[int, str]:
    return {c.id: c.name for c in store.list_classes(db)}


def _class_choices(db) -> list[tuple[str, int]]:
    """(name, id) dropdown choices: a dropdown hands back the id, never a name to be re-resolved."""
    return [(name, class_id) for class_id, name in _names(db).items()]


def _counters(session: LabelSession, counts: dict) -> str:
    """labels.db's counts, from store.status like the header's, and what this tab holds."""
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
    size = f" · {item['width']}×{item['height']}" if item.get("width") else ""
    about = f"item #{entry.item_id} · {item['original_name']}{size}"
    top = entry.top3
    if not top:   # served before any model existed
        return (f"**Why this item:** picked at random: no model is active yet, so there is no prediction; "
                f"choose its class with a key or a button  \n{about}")
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
        HISTORY: f"re-opened from your history to change it; {says}",
    }
    # audit items (holdout draws among them) all read alike, so an annotator cannot tell them apart
    strategy = "audit" if entry.is_audit and entry.strategy not in ("undo", HISTORY) else entry.strategy
    reason = reasons.get(strategy, f"{strategy}; {says}")
    return f"**Why this item:** {reason}  \n{about} · model {entry.model_version}"


def _what(event: store.LabelEvent, names: dict[int, str]) -> str:
    """A stored decision in words: 'correct → Shirt', 'skip'."""
    return f"{event.action} → {names[event.class_id]}" if event.class_id is not None else event.action


def _stored(event: store.LabelEvent, names: dict[int, str], entry: QueueEntry) -> str:
    """The notice after a decision: what labels.db now holds for the item, not what was asked for."""
    said = f" (the model said {entry.top3[0][0]})" if event.action == "correct" else ""
    return f"Stored #{event.item_id}: {_what(event, names)}{said}."


def _waiting_notice(db) -> str:
    """What to show while there is no model: the seed job's progress, or why it failed."""
    job = jobs.active_job(db)
    if job is not None:
        return (f"Training the seed model: {job_step(job)} ({job.fraction_done:.0%}). "
                "Items appear here when it is done.")
    last = next(iter(jobs.list_jobs(db, limit=1)), None)
    if last is not None and last.status in ("failed", "cancelled"):
        return f"No model yet: the last training job {last.status}: {last.message}"
    return "No model yet: a lead can start the seed training in the Train tab."


def _render(ctx: UIContext, session: LabelSession, db, annotator: str, notice: str = "") -> Panel:
    names = tuple(store.class_names(db))
    entry = session.current
    counts = store.status(db).as_dict()
    history, rows = _history(ctx, db, annotator)
    sidebar = (_counters(session, counts), notice, names, _progress(db, counts, annotator), history, rows)
    if entry is None:
        return Panel(session, None, None, None, None, "", f"✓ Accept ({keys_for('accept')})", *sidebar)
    item = store.get_item(db, entry.item_id)
    original = str(ctx.paths.home / item["stored_path"]) if item.get("stored_path") else None
    top3 = {name: prob for name, prob in entry.top3} or None
    confirm = (f"✓ {entry.top3[0][0]}  ({keys_for('accept')})" if entry.top3
               else f"✓ Accept ({keys_for('accept')}): no prediction yet, pick a class")
    return Panel(session, entry.item_id, original, model_view(ctx.paths, item, ZOOM), top3, _why(entry, item), confirm,
                 *sidebar)


def _show_next(ctx: UIContext, session: LabelSession, ws: Workspace, annotator: str, notice: str = "") -> Panel:
    """The next prefetched entry on screen; while no model is active the queue is random (cold start)."""
    session.advance(ws, annotator)
    if ws.version is None:
        notice = f"{notice} {_waiting_notice(ws.db)}"
        if session.current is not None:
            notice += " Meanwhile items come in random order: choose each one's class."
    if session.current is None:
        notice += (" Nothing left to label with this filter: import more photos or change the class filter."
                   if session.class_filter is not None else
                   " Nothing left to label: import more photos in the Import tab.")
    return _render(ctx, session, ws.db, annotator, notice.strip())


# ---------------------------------------------------------------- handlers

def load_view(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """First paint of a page: the item on screen, or the next one."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        ws = labeling.workspace(ctx.paths)
        if session.current is not None and session.current.model_version == ws.version:
            panel = _render(ctx, session, ws.db, annotator)
        else:
            session.current = None      # served by a version that is no longer active: rank it again
            panel = _show_next(ctx, session, ws, annotator)
        session.class_count = len(panel.classes)   # the class buttons the page draws from this answer
        return panel


def refresh(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """Timer tick: fill an empty screen once a model or new items exist; pick up new classes and
    other annotators' decisions in the counters and the progress."""
    if session is not None and session.current is not None:
        annotator = ctx.require(request, "label")
        with session.lock, user_errors():
            db = store.open_db(ctx.paths.db)
            if len(store.list_classes(db)) != session.class_count:
                return _render(ctx, session, db, annotator)
            counts = store.status(db).as_dict()
            skip = gr.skip()
            return Panel(session, skip, skip, skip, skip, skip, skip, _counters(session, counts), skip, skip,
                         _progress(db, counts, annotator), skip, skip)
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
    with session.lock, user_errors():
        ws = labeling.workspace(ctx.paths)
        db = ws.db
        entry = session.current
        if entry is None:
            return _render(ctx, session, db, annotator, "Nothing on screen to decide.")
        if item_id is None or int(item_id) != entry.item_id:
            return _render(ctx, session, db, annotator, f"Item #{item_id} is not on screen any more: nothing recorded.")
        if action not in store.DECISIONS:
            raise ActiveLearnError(f"unknown action {action!r}; use one of {', '.join(store.DECISIONS)}")
        names = _names(db)
        if class_id is not None and class_id not in names:
            raise ActiveLearnError(f"unknown class id {class_id}; ids run from 0 to {max(names)}")
        if action == "correct" and class_id is None:
            raise ActiveLearnError("a correction needs a class")
        try:
            event = labeling.decide(ws, annotator=annotator, item_id=entry.item_id,
                                    action="confirm" if action == "correct" else action,
                                    class_id=class_id, entry=entry)
        except store.DecisionConflict as conflict:   # a colleague has it: theirs stands, move on
            reason = str(conflict)
            return _show_next(ctx, session, ws, annotator, f"{reason[:1].upper()}{reason[1:]}: here is the next item.")
        return _show_next(ctx, session, ws, annotator, _stored(event, names, entry))


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
    with user_errors():
        class_id = class_id_of(store.open_db(ctx.paths.db), class_text)
    return decide_item(ctx, session, item_id, action, class_id, request)


def undo_last(ctx: UIContext, session: LabelSession | None, request: gr.Request | None) -> Panel:
    """Revert this annotator's newest decision and put that item back on screen."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        ws = labeling.workspace(ctx.paths)
        db = ws.db
        reverted = store.undo(db, annotator=annotator)
        if reverted is None:
            return _render(ctx, session, db, annotator, "Nothing to undo.")
        undone = f"Undid {_what(reverted, _names(db))} on #{reverted.item_id}"
        entry = session.seen.get(reverted.item_id) or labeling.lookup(ws, reverted.item_id)
        if entry is None:  # no active model to describe it: the decision is still undone
            return _render(ctx, session, db, annotator, f"{undone}.")
        session.bring_back(db, annotator, entry)
        return _render(ctx, session, db, annotator, f"{undone}: it is back on screen.")


def reopen(ctx: UIContext, session: LabelSession | None, rows: list[dict] | None, index: int,
           request: gr.Request | None) -> Panel:
    """A click on the history: put that item on screen again, to decide it anew.

    `rows` is what the clicked gallery showed (handed back with the click), so a click
    lands on the decision the annotator saw even if the history moved meanwhile. The
    next decision is a new event; the old one stays in labels.db.
    """
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        ws = labeling.workspace(ctx.paths)
        db = ws.db
        if not rows or not 0 <= index < len(rows):
            raise ActiveLearnError("that decision is not in your history any more: nothing re-opened")
        row = rows[index]
        entry = labeling.lookup(ws, row["item_id"]) or session.seen.get(row["item_id"])
        if entry is None:
            raise ActiveLearnError(f"item #{row['item_id']} cannot be re-opened: no active model scores it")
        session.bring_back(db, annotator, entry)
        session.current = replace(session.current, strategy=HISTORY)
        session.remember(session.current)
        return _render(ctx, session, db, annotator,
                       f"Re-opened #{row['item_id']}: you stored {_decision_words(row)} at "
                       f"{_clock(row['created_at'])}. Decide again: that is stored as a new decision, "
                       "and the old one stays in labels.db.")


def set_queue_options(ctx: UIContext, session: LabelSession | None, strategy: str,
                      class_filter: int | str | None, request: gr.Request | None) -> Panel:
    """Change the query strategy / class filter (a class id): the prefetched queue is released and refetched."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        if strategy not in STRATEGIES:
            raise ActiveLearnError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
        ws = labeling.workspace(ctx.paths)
        db = ws.db
        names = _names(db)
        class_id = None if class_filter in (None, "", ALL_CLASSES) else int(class_filter)
        if class_id is not None and class_id not in names:
            raise ActiveLearnError(f"unknown class id {class_id}; ids run from 0 to {max(names)}")
        if (strategy, class_id) == (session.strategy, session.class_filter) and session.current is not None:
            # a dropdown re-sends its value when it loses focus: keep the item
            return _render(ctx, session, db, annotator)
        session.strategy, session.class_filter = strategy, class_id
        session.release(db, annotator)
        label = names[class_id] if class_id is not None else "all classes"
        return _show_next(ctx, session, ws, annotator, f"Queue: {strategy}, {label}.")


# ---------------------------------------------------------------- grid mode

def similarity_order(vectors: np.ndarray) -> list[int]:
    """An order of the rows that puts similar ones side by side (optimal leaf ordering of an
    average-linkage tree over unit-length vectors), so the odd ones out on a page stand together."""
    if len(vectors) < 3:
        return list(range(len(vectors)))
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import pdist

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distances = pdist(unit.astype(np.float64))
    return [int(i) for i in leaves_list(optimal_leaf_ordering(linkage(distances, "average"), distances))]


def _page_token(entries: Sequence[QueueEntry]) -> str:
    return ",".join(str(e.item_id) for e in entries)


def _predicted_counts(ws: Workspace) -> np.ndarray:
    """Unlabeled pool items per class the active model predicts for them."""
    scores = ws.scores()
    pool = store.unlabeled_ids(ws.db, "pool")
    pool = pool[np.isin(pool, scores.item_ids)]
    return np.bincount(scores.probs[scores.rows(pool)].argmax(1), minlength=scores.probs.shape[1])


def _grid_classes(ws: Workspace, choice: int | str | None) -> list[int]:
    """The classes to try for the next page, in order: the chosen one, or the largest first."""
    if choice in (None, "", LARGEST):
        counts = _predicted_counts(ws)
        return [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    names = _names(ws.db)
    if int(choice) not in names:
        raise ActiveLearnError(f"unknown class id {choice}; ids run from 0 to {max(names)}")
    return [int(choice)]


def _next_page(session: LabelSession, ws: Workspace, annotator: str, classes: list[int]) -> list[QueueEntry]:
    """The next page: GRID_SIZE of the first class that has any, leaving out what the tab already holds.

    Leases of what the page does not keep (the previous page, the extra fetched) are given back.
    """
    held = {e.item_id for e in session.held()}
    old = {e.item_id for e in session.grid}
    entries: list[QueueEntry] = []
    for class_id in classes:
        fetched = labeling.grid_page(ws, annotator=annotator, class_id=class_id, n=GRID_SIZE + len(held))
        entries = [e for e in fetched if e.item_id not in held][:GRID_SIZE]
        shown = {e.item_id for e in entries}
        store.release_leases(ws.db, [e.item_id for e in fetched if e.item_id not in held | shown], annotator)
        if entries:
            break
    kept = {e.item_id for e in entries}
    store.release_leases(ws.db, sorted(old - kept - held), annotator)
    if len(entries) > 2:
        scores = ws.scores()
        order = similarity_order(scores.embeddings[scores.rows([e.item_id for e in entries])])
        entries = [entries[i] for i in order]
    return entries


def _grid_view(ctx: UIContext, session: LabelSession, ws: Workspace, annotator: str, choice: int | str | None,
               notice: str = "") -> GridView:
    """Load the next page for `choice` into the session and draw it, all ticked."""
    db = ws.db
    if ws.version is None:
        session.grid = []
        return GridView(session, [], gr.update(choices=[], value=[]), "",
                        f"{_waiting_notice(db)} Grid pages need a model's predictions: label one by one meanwhile.")
    entries = _next_page(session, ws, annotator, _grid_classes(ws, choice))
    if entries and [e.item_id for e in entries] == [e.item_id for e in session.grid]:   # same page: keep ticks
        skip = gr.skip()
        return GridView(session, skip, skip, skip, (notice + " Same page as before.").strip())
    session.grid = entries
    for entry in entries:
        session.remember(entry)
    ids = [e.item_id for e in entries]
    if entries:
        name = _names(db)[entries[0].predicted_class_id]
        more = int(_predicted_counts(ws)[entries[0].predicted_class_id]) - len(entries)
        page = (f"**{len(entries)} photos the model calls {name}** (most confident first, similar ones side "
                f"by side; about {max(more, 0):,} more after this page). Untick the ones that are not "
                f"{name}, then confirm: the ticked ones are stored as {name}, the unticked stay unlabeled "
                "and come first in One by one.")
    else:
        chosen = "" if choice in (None, "", LARGEST) else f" predicted as {_names(db)[int(choice)]}"
        page = f"No unlabeled items{chosen} left for a grid page."
    gallery = [(thumbnail(ctx.paths, store.get_item(db, e.item_id)), f"#{e.item_id} · {e.confidence:.0%}")
               for e in entries]
    return GridView(session, gallery, gr.update(choices=[(f"#{i}", i) for i in ids], value=ids),
                    _page_token(entries), f"{notice} {page}".strip())


def load_grid(ctx: UIContext, session: LabelSession | None, choice: int | str | None,
              request: gr.Request | None) -> GridView:
    """A page of items the model puts in one class (a class id, or LARGEST), all ticked."""
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        return _grid_view(ctx, session, labeling.workspace(ctx.paths), annotator, choice)


def enter_grid(ctx: UIContext, session: LabelSession | None, choice: int | str | None,
               request: gr.Request | None) -> GridView:
    """Opening the grid: load a page, unless one is there already (its ticks stay as they are)."""
    if session is not None and session.grid:
        ctx.require(request, "label")
        skip = gr.skip()
        return GridView(session, skip, skip, skip, skip)
    return load_grid(ctx, session, choice, request)


def confirm_grid(ctx: UIContext, session: LabelSession | None, ticked: list[int] | None, token: str | None,
                 choice: int | str | None, request: gr.Request | None) -> tuple[Panel, GridView]:
    """Store the page's class for exactly the ticked items, then load the next page.

    The unticked items stay unlabeled and come first on the single-item screen. A token
    that is not the page's (a second press while the next page was on its way) records nothing.
    """
    annotator = ctx.require(request, "label")
    session = _session(session)
    with session.lock, user_errors():
        ws = labeling.workspace(ctx.paths)
        db = ws.db
        if not session.grid:
            raise ActiveLearnError("no grid page loaded: choose a class first")
        if token != _page_token(session.grid):
            skip = gr.skip()
            return (_render(ctx, session, db, annotator),
                    GridView(session, skip, skip, skip,
                             "That confirm was meant for a page that is gone: nothing recorded."))
        ticked_ids = {int(i) for i in ticked or []}
        page_ids = {e.item_id for e in session.grid}
        if not ticked_ids <= page_ids:
            raise ActiveLearnError(f"items {sorted(ticked_ids - page_ids)} are not on this page: nothing recorded")
        decided = store.label_state(db)
        gone = [e for e in session.grid if e.item_id in decided]   # decided elsewhere since the page loaded
        page = [e for e in session.grid if e.item_id not in decided]
        events, unticked = labeling.confirm_page(ws, annotator=annotator, entries=page, ticked=ticked_ids)
        stored = {e.item_id for e in events}
        refused = {e.item_id for e in page if e.item_id in ticked_ids} - stored   # a colleague's, meanwhile
        session.after_grid(stored | refused | {e.item_id for e in gone}, unticked)
        name = _names(db)[session.grid[0].predicted_class_id]
        session.grid = []
        notice = (f"Confirmed {len(events)} items as {name}; {len(unticked)} unticked "
                  f"{'item is' if len(unticked) == 1 else 'items are'} next in One by one.")
        if gone or refused:
            notice += f" {len(gone) + len(refused)} were decided by someone else meanwhile and left as they were."
        panel = (_render(ctx, session, db, annotator, notice) if session.current
                 else _show_next(ctx, session, ws, annotator, notice))
        return panel, _grid_view(ctx, session, ws, annotator, choice, notice)


# ---------------------------------------------------------------- classes and Grad-CAM

def add_class(ctx: UIContext, session: LabelSession | None, name: str, request: gr.Request | None) -> ClassAdded:
    """Lead only: a new class, with its button and key at once; the next retraining grows the model."""
    ctx.require(request, "classes")
    with user_errors():
        db = store.open_db(ctx.paths.db)
        info = store.add_class(db, name or "")
        choices = _class_choices(db)
    if session is not None:
        session.class_count = len(choices)
    key = class_key(info.id)
    reach = f"key **{key}**" if key else f"the finder ({keys_for('find')})"
    return ClassAdded(tuple(name for name, _ in choices), gr.update(choices=[(LARGEST_LABEL, LARGEST), *choices]),
                      gr.update(choices=[(ALL_CLASSES, ALL_CLASSES), *choices]),
                      f"Added class **{info.name}** (output {info.id}, {reach}); the next retraining learns it.")


def grad_cam(ctx: UIContext, item_id: float | None, on: bool, request: gr.Request | None) -> tuple:
    """(overlay image update, caption): the active model's Grad-CAM for the item on screen, when toggled on."""
    ctx.require(request, "label")
    if not on or not item_id:
        return gr.update(value=None, visible=bool(on)), ""
    from activelearn.explain import explain_item
    with user_errors():
        explained = explain_item(ctx.paths, int(item_id))
    caption = (f"Grad-CAM of **{explained.class_name}** ({explained.probability:.0%}) by {explained.version} "
               f"({explained.kind}, {explained.layer}) in {explained.seconds * 1000:.0f} ms")
    return gr.update(value=explained.overlay, visible=True), caption


# ---------------------------------------------------------------- layout

def build(ctx: UIContext) -> None:
    """Lay out the Label tab and wire every control to the handlers above (the tab contract of
    activelearn.ui.context). Every decision also refreshes the page header (ctx.page.header), so
    both show the counts of the same moment."""
    page = ctx.page
    db = store.open_db(ctx.paths.db)
    choices = _class_choices(db)
    session = gr.State(None)
    classes = gr.State(tuple(name for name, _ in choices))
    history_rows = gr.State([])
    notice = gr.Markdown(elem_id="al-notice")
    # Every session's label events share one pool of LABEL_WORKERS threads (Gradio's default is one
    # request at a time per event, so five annotators' keys queued behind each other); the session's
    # own lock keeps one page's events in order and the store's write transaction orders all sessions.
    queued = {"show_progress": "hidden", "concurrency_limit": LABEL_WORKERS, "concurrency_id": "label"}
    # Decisions skip Gradio's queue: the page POSTs each one and gets the answer in the reply (one
    # request, no event stream, no queue bookkeeping, which was most of a decision's server time:
    # benchmarks/README.md, "Load and faults"). gradio_client joins the queue regardless, into the
    # pool above. An unqueued answer cannot tell the page that a State changed, so these answers
    # leave the class names alone (`answered`); new classes arrive with the timer's redraw.
    unqueued = {**queued, "queue": False}
    one_at_a_time = {"show_progress": "hidden"}   # Grad-CAM runs the model: one at a time
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            with gr.Tabs(selected="single") as modes:
                with gr.Tab("One by one", id="single", elem_id=PANEL_ID):
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=5):
                            gr.Markdown("**Original photo**")
                            original = gr.Image(show_label=False, type="filepath", interactive=False, height=400,
                                                buttons=["fullscreen"], elem_id="al-original")
                        with gr.Column(scale=3):
                            gr.Markdown("**What the model sees:** the 28×28 conversion, enlarged")
                            preview = gr.Image(show_label=False, type="filepath", interactive=False,
                                               height=224, width=224, buttons=[], elem_id="al-preview")
                            top3 = gr.Label(label="Model's top 3", num_top_classes=3, elem_id="al-top3")
                            why = gr.Markdown(elem_id="al-why")
                            cam_on = gr.Checkbox(False, label="Show where the model looked (Grad-CAM)",
                                                 elem_id="al-cam-toggle")
                            cam = gr.Image(show_label=False, type="pil", format="png", interactive=False,
                                           height=224, buttons=[], visible=False, elem_id="al-cam")
                            cam_note = gr.Markdown(elem_id="al-cam-note")
                    with gr.Row():
                        confirm_btn = gr.Button(f"✓ Accept ({keys_for('accept')})", variant="primary",
                                                elem_id=COMMAND_BUTTONS["accept"], scale=2)
                        skip_btn = gr.Button(f"Skip ({keys_for('skip')})", elem_id=COMMAND_BUTTONS["skip"], scale=1)
                        reject_btn = gr.Button(f"Not a product ({keys_for('reject')})", variant="stop",
                                               elem_id=COMMAND_BUTTONS["reject"], scale=1)
                        undo_btn = gr.Button(f"↶ Undo ({keys_for('undo')})", elem_id=COMMAND_BUTTONS["undo"],
                                             scale=1)

                    @gr.render(inputs=[classes], **ONE_RENDER_AT_A_TIME)
                    def class_buttons(names: Sequence[str]) -> None:
                        """A button per class, labeled with its key; drawn again when a class is added."""
                        with gr.Row(elem_id="al-class-buttons"):
                            for class_id, name in enumerate(names):
                                gr.Button(class_button_label(class_id, name), size="sm", min_width=60,
                                          elem_id=f"al-class-{class_id}").click(
                                    fixed_decision("confirm", class_id), [session, shown_id], panel,
                                    api_visibility="private", **unqueued)
                        gr.Markdown(key_legend(names), elem_id="al-keys")

                    gr.HTML(FINDER_HTML, js_on_load=None, elem_id="al-class-finder")
                    counters = gr.Markdown(elem_id="al-counters")
                with gr.Tab("Grid", id="grid", elem_id=GRID_ID) as grid_tab:
                    with gr.Row(equal_height=True):
                        grid_class = gr.Dropdown([(LARGEST_LABEL, LARGEST), *choices], value=LARGEST,
                                                 label="Class of the page", scale=3, elem_id="al-grid-class")
                        grid_load = gr.Button("Reload page", elem_id="al-grid-load", scale=1)
                        grid_confirm = gr.Button(f"✓ Confirm ticked ({keys_for('confirm', GRID_KEYMAP)})",
                                                 variant="primary", elem_id=GRID_CONFIRM_ID, scale=1)
                    grid_notice = gr.Markdown(elem_id="al-grid-notice")
                    gallery = gr.Gallery(show_label=False, columns=GRID_COLUMNS, height="auto", allow_preview=False,
                                         object_fit="contain", buttons=[], elem_id=GALLERY_ID)
                    ticked = gr.CheckboxGroup([], value=[], label="Ticked = stored as the page's class on confirm",
                                              elem_id=TICKED_ID)
                    gr.Markdown(grid_legend(), elem_id="al-grid-keys")
                    grid_token = gr.Textbox(visible="hidden", elem_id="al-grid-page")
        with gr.Column(scale=1, min_width=270, elem_id="al-sidebar"):
            progress_md = gr.Markdown(elem_id="al-progress")
            gr.Markdown(f"**Your last {HISTORY_SIZE} decisions**, newest first: click one to change it")
            history = gr.HTML("", css_template=HISTORY_CSS, js_on_load=HISTORY_JS, apply_default_css=False,
                              elem_id="al-history")
    with gr.Accordion("Queue options", open=False):
        with gr.Row():
            strategy = gr.Dropdown(list(STRATEGIES), value="margin", label="Query strategy", elem_id="al-strategy")
            class_filter = gr.Dropdown([(ALL_CLASSES, ALL_CLASSES), *choices], value=ALL_CLASSES,
                                       label="Only items predicted as", elem_id="al-class-filter")
    with gr.Accordion("Classes (lead)", open=False) as classes_box:
        with gr.Row():
            new_class = gr.Textbox(label="New class name", scale=3, elem_id="al-new-class")
            add_btn = gr.Button("Add class", scale=1, elem_id="al-add-class")
        class_message = gr.Markdown(elem_id="al-class-message")
    page.only_for("classes", classes_box)
    shown_id = gr.Number(visible="hidden", precision=0, elem_id="al-item-id")
    redraw = gr.Number(0, visible="hidden", precision=0, elem_id="al-redraw")   # bumped when a tick needs all
    cam_again = gr.Button(visible="hidden", elem_id="al-cam-again")
    api_action = gr.Textbox(visible=False)
    api_class = gr.Textbox(visible=False)
    api_decide = gr.Button(visible=False)
    timer = gr.Timer(POLL_S)

    panel = [session, shown_id, original, preview, top3, why, confirm_btn, counters, notice, classes,
             progress_md, history, history_rows, page.header]
    grid_view = [session, gallery, ticked, grid_token, grid_notice]

    def shown(view: Panel, request: gr.Request) -> tuple:
        """A panel plus the header, so both show the counts of the same moment."""
        return (*view, page.header_html(request))

    def answered(view: Panel, request: gr.Request) -> tuple:
        """`shown` for an unqueued event: the class names stay as the page has them (see `unqueued`)."""
        return shown(view._replace(classes=gr.skip()), request)

    def on_load(session_value, request: gr.Request):
        return shown(load_view(ctx, session_value, request), request)

    def on_tick(session_value, redraws, request: gr.Request):
        """Counts and progress only (each skipped output costs Gradio a component); all when refresh drew all."""
        view = refresh(ctx, session_value, request)
        whole = view.item_id != gr.skip()
        return (view.session, view.counters, view.progress, page.header_html(request),
                (redraws or 0) + 1 if whole else gr.skip())

    def on_decide(session_value, item_id, action, class_text, request: gr.Request):
        return answered(decide_from_api(ctx, session_value, item_id, action, class_text, request), request)

    def fixed_decision(action: str, class_id: int | None):
        def handler(session_value, item_id, request: gr.Request):
            return answered(decide_item(ctx, session_value, item_id, action, class_id, request), request)
        return handler

    def on_undo(session_value, request: gr.Request):
        return answered(undo_last(ctx, session_value, request), request)

    def on_history(session_value, rows, evt: gr.SelectData, request: gr.Request):
        return (*answered(reopen(ctx, session_value, rows, evt.index, request), request), gr.Tabs(selected="single"))

    def on_options(session_value, strategy_value, filter_value, request: gr.Request):
        return answered(set_queue_options(ctx, session_value, strategy_value, filter_value, request), request)

    def on_grid(session_value, class_value, request: gr.Request):
        return load_grid(ctx, session_value, class_value, request)

    def on_grid_enter(session_value, class_value, request: gr.Request):
        return enter_grid(ctx, session_value, class_value, request)

    def on_confirm_page(session_value, ticked_value, token, class_value, request: gr.Request):
        panel_out, grid_out = confirm_grid(ctx, session_value, ticked_value, token, class_value, request)
        return (*shown(panel_out, request), *grid_out[1:])

    def on_add_class(session_value, name, request: gr.Request):
        return add_class(ctx, session_value, name, request)

    def on_cam(item_id, on, request: gr.Request):
        return grad_cam(ctx, item_id, on, request)

    cam_on.change(on_cam, [shown_id, cam_on], [cam, cam_note], api_name="grad_cam", **one_at_a_time)
    # a new item asks the server for its Grad-CAM only while the toggle is on: no round trip per key otherwise
    cam_again.click(on_cam, [shown_id, cam_on], [cam, cam_note], api_visibility="private", **one_at_a_time)
    shown_id.change(None, [shown_id], None, js=CAM_AGAIN_JS)
    page.demo.load(None, None, None, js=keys_js())
    page.demo.load(on_load, [session], panel, api_name="label_load", **queued)
    # the timer skips the queue too: queued, its answer could arrive after a later decision's and put
    # older counts back on screen (it sends no class names; a redraw it asks for is a queued load)
    timer.tick(on_tick, [session, redraw], [session, counters, progress_md, page.header, redraw],
               api_visibility="private", **unqueued)
    redraw.change(on_load, [session], panel, api_visibility="private", **queued)
    api_decide.click(on_decide, [session, shown_id, api_action, api_class], panel, api_name="decide", **unqueued)
    for btn, action in ((confirm_btn, "confirm"), (skip_btn, "skip"), (reject_btn, "reject")):
        btn.click(fixed_decision(action, None), [session, shown_id], panel,
                  api_visibility="undocumented", api_name=f"key_{action}", **unqueued)
    undo_btn.click(on_undo, [session], panel, api_name="undo", **unqueued)
    history.select(on_history, [session, history_rows], [*panel, modes], api_visibility="private", **unqueued)
    gr.on([strategy.input, class_filter.input], on_options, [session, strategy, class_filter], panel,
          api_name="queue_options", **unqueued)
    grid_tab.select(on_grid_enter, [session, grid_class], grid_view, api_visibility="private")
    gr.on([grid_class.input, grid_load.click], on_grid, [session, grid_class], grid_view, api_name="grid_page")
    grid_confirm.click(on_confirm_page, [session, ticked, grid_token, grid_class],
                       [*panel, gallery, ticked, grid_token, grid_notice], api_name="confirm_page")
    add_btn.click(on_add_class, [session, new_class], [classes, grid_class, class_filter, class_message],
                  api_name="add_class")
