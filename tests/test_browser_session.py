"""A 200-decision keyboard-only session in headless Chromium, checked against labels.db after every key.

Issue 10's "done means": keys only (a, digits, x, Space, Backspace and the class
finder); after each decision the newest event in labels.db is exactly the key's
decision (the model's class for a, the digit's class, the finder's class); the
header's, the panel's and the progress line's counts equal what the events in
labels.db add up to (replayed here from the raw events, undo included); and at
least 10% of the decisions land in the in-domain holdout.

The home holds synthetic 28x28 items (tests.helpers.add_items) and an untrained
model of the production architecture: the session needs real predictions, not
good ones, and no Fashion-MNIST.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pytest

from activelearn import FMNIST_CLASSES, registry, store
from activelearn.config import resolve_paths
from tests.helpers import CHROMIUM, LEAD, add_items, serving

if TYPE_CHECKING:
    from playwright.sync_api import Page

DECISIONS = 200
POOL, HOLDOUT = 320, 80
CLASS_KEYS = "1234567890"
#: Keys and how often they are pressed; "finder" is "/", the class name typed, Enter.
MIX = {"a": 0.30, "digit": 0.32, "x": 0.08, "Space": 0.10, "finder": 0.10, "Backspace": 0.10}
HEADER = re.compile(r"([\d,]+) items · ([\d,]+) labeled · ([\d,]+) unlabeled")
PANEL = re.compile(r"([\d,]+) labeled · ([\d,]+) skipped · ([\d,]+) rejected · ([\d,]+) unlabeled in pool")
PROGRESS = re.compile(r"([\d,]+) of ([\d,]+) items labeled .*?([\d,]+) left in the pool")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def served(tmp_path):
    """POOL + HOLDOUT synthetic items, an untrained production-architecture model as v1, a real server."""
    from activelearn.model import build_model

    paths = resolve_paths(tmp_path / "home", tmp_path / "no-fashion-mnist")
    add_items(paths, POOL)
    add_items(paths, HOLDOUT, start=POOL, split="holdout")
    registry.register(paths.models, build_model(len(FMNIST_CLASSES), seed=0),
                      {"metrics": {}, "hyperparameters": {}, "class_names": list(FMNIST_CLASSES)},
                      activate_now=True)
    with serving(paths, [LEAD]) as url:
        yield url, paths


def replayed(db) -> dict[int, tuple[str, int | None]]:
    """Each decided item's current (action, class id), replayed from the raw events: undo reverts its target."""
    events: dict[int, tuple[int, str, int | None]] = {}
    undone: set[int] = set()
    for event_id, item, action, class_id, undoes in db.execute(
            "SELECT id, item_id, action, class_id, undoes FROM labels ORDER BY id"):
        if action == "undo":
            undone.add(undoes)
        else:
            events[event_id] = (item, action, class_id)
    state: dict[int, tuple[str, int | None]] = {}
    for event_id in sorted(events):
        if event_id not in undone:
            item, action, class_id = events[event_id]
            state[item] = (action, class_id)
    return state


def counts_in_db(db) -> dict[str, int]:
    state = replayed(db)
    splits = dict(db.execute("SELECT id, split FROM items").fetchall())
    labeled = sum(action in ("confirm", "correct") for action, _ in state.values())
    return {"items": len(splits), "labeled": labeled,
            "skipped": sum(action == "skip" for action, _ in state.values()),
            "rejected": sum(action == "reject" for action, _ in state.values()),
            "unlabeled": sum(split == "pool" for item, split in splits.items() if item not in state)}


def counts_on_screen(page: Page) -> dict[str, int]:
    """The header's, the panel's and the progress line's counts, read at one moment; they must agree."""
    header, panel, progress = page.evaluate(
        "() => ['#al-header', '#al-counters', '#al-progress'].map((s) => document.querySelector(s).innerText)")
    found = HEADER.search(header), PANEL.search(panel), PROGRESS.search(progress)
    assert all(found), f"counts not found in {header!r} / {panel!r} / {progress!r}"
    (h_items, h_labeled, h_unlabeled), (labeled, skipped, rejected, unlabeled), (g_labeled, g_items, g_left) = (
        tuple(int(n.replace(",", "")) for n in m.groups()) for m in found)
    assert h_items == g_items and h_labeled == labeled == g_labeled and h_unlabeled == unlabeled == g_left, \
        f"the page disagrees with itself: {header!r} / {panel!r} / {progress!r}"
    return {"items": h_items, "labeled": labeled, "skipped": skipped, "rejected": rejected, "unlabeled": unlabeled}


def shown(page: Page) -> tuple[int, str]:
    """(item on screen, the class the accept button offers: the model's top class)."""
    item = int(page.input_value("#al-item-id input"))
    offered = re.match(r"✓ (.+?)\s+\(", page.inner_text("#al-confirm")).group(1)
    return item, offered


def wait_notice(page: Page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#al-notice")).to_contain_text(text, timeout=30_000)


def test_two_hundred_keyboard_decisions_are_stored_as_chosen_and_counted_alike(served, page):
    _, paths = served
    db = store.open_db(paths.db)
    names = list(FMNIST_CLASSES)
    rng = np.random.default_rng(7)
    kinds, weights = list(MIX), np.array(list(MIX.values()))
    mine: list[int] = []      # this session's effective event ids, newest last (what Backspace undoes)
    decisions = undos = 0
    while decisions < DECISIONS:
        kind = str(rng.choice(kinds, p=weights / weights.sum()))
        if kind == "Backspace" and not mine:
            continue
        item, offered = shown(page)
        before = db.execute("SELECT COALESCE(MAX(id), 0) FROM labels").fetchone()[0]
        if kind == "Backspace":
            page.keyboard.press("Backspace")
            target = db.execute("SELECT item_id FROM labels WHERE id = ?", [mine[-1]]).fetchone()[0]
            wait_notice(page, f"on #{target}: it is back on screen.")
            rows = db.execute("SELECT item_id, action, undoes FROM labels WHERE id > ?", [before]).fetchall()
            assert rows == [(target, "undo", mine.pop())], "Backspace undid this session's newest decision"
            assert shown(page)[0] == target
            undos += 1
        else:
            if kind == "finder":
                want = int(rng.integers(len(names)))
                page.keyboard.press("/")
                page.keyboard.type(names[want].lower())
                page.keyboard.press("Enter")
            elif kind == "digit":
                want = int(rng.integers(len(names)))
                page.keyboard.press(CLASS_KEYS[want])
            else:
                want = {"a": names.index(offered), "x": None, "Space": None}[kind]
                page.keyboard.press(kind)
            wait_notice(page, f"Stored #{item}: ")
            rows = db.execute("SELECT id, item_id, action, class_id, predicted_class_id, annotator FROM labels "
                              "WHERE id > ?", [before]).fetchall()
            assert len(rows) == 1, f"{kind}: one key, one event"
            event_id, stored_item, action, class_id, predicted, annotator = rows[0]
            assert (stored_item, annotator) == (item, LEAD.name)
            assert names[predicted] == offered, "the event keeps the prediction the page showed"
            if kind in ("x", "Space"):
                assert (action, class_id) == ({"x": "reject", "Space": "skip"}[kind], None)
            else:
                assert class_id == want, f"{kind} stored class {class_id}, not the chosen {want}"
                assert action == ("confirm" if want == predicted else "correct")
            mine.append(event_id)
            decisions += 1
        assert counts_on_screen(page) == counts_in_db(db), f"after decision {decisions} ({kind})"

    state = replayed(db)
    splits = dict(db.execute("SELECT id, split FROM items").fetchall())
    holdout = sum(splits[item] == "holdout" for item in state)
    assert len(state) == DECISIONS - undos, "every decision not undone stands, one per item"
    assert holdout >= 0.1 * len(state), f"only {holdout} of {len(state)} decisions were holdout items"
    assert undos >= 10 and db.execute("SELECT COUNT(DISTINCT annotator) FROM labels").fetchone()[0] == 1
