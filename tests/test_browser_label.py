"""The Label tab in headless Chromium, judged by what labels.db stored after every action.

Issues 10 and 12: the class finder records only an explicit choice, and exactly
that class; class buttons and keys store class ids; every class, added ones
too, has a button and a key; Prodigy's keymap; keys never act in a text field
and no field swallows undo; the header's and the panel's counts equal
labels.db's after each decision; nothing covers the photo or its conversion.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pytest

from activelearn import scoring, store
from tests.helpers import CHROMIUM, LEAD

if TYPE_CHECKING:
    from playwright.sync_api import Page

SHIRT, COAT, BAG = 6, 4, 8
#: Twenty decisions by key (Prodigy's keys and the older ones), with a skip and undos among them.
KEYS = ["a", "Enter", "Space", "x", "1", "s", "Backspace", "a", "7", "Space", "z", "x", "Enter", "2", "a",
        "Space", "Backspace", "0", "a", "x"]
HEADER_COUNTS = re.compile(r"([\d,]+) labeled · ([\d,]+) unlabeled")
PANEL_COUNTS = re.compile(r"([\d,]+) labeled · ([\d,]+) skipped · ([\d,]+) rejected · ([\d,]+) unlabeled in pool")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"),
]


def ready(page: Page) -> None:
    """Wait until the first item, its class buttons and the header's counts are on screen."""
    from playwright.sync_api import expect

    expect(page.locator("#al-why")).to_contain_text("Why this item", timeout=60_000)
    expect(page.locator("#al-class-9")).to_be_visible()
    expect(page.locator("#al-header")).to_contain_text("labeled")


def item_on_screen(page: Page) -> int:
    return int(page.input_value("#al-item-id input"))


def labels(db) -> list[tuple]:
    return db.execute("SELECT item_id, action, class_id FROM labels ORDER BY id").fetchall()


def stored(db, item: int) -> tuple[str, int] | None:
    return store.label_state(db).get(item)


def decided_as(db, item: int, class_id: int) -> str:
    """The action a decision for class_id on this item must be stored as (confirm = the model's class)."""
    predicted = db.execute("SELECT predicted_class_id FROM labels WHERE item_id = ? ORDER BY id DESC LIMIT 1",
                           [item]).fetchone()[0]
    return "confirm" if predicted == class_id else "correct"


def expect_notice(page: Page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#al-notice")).to_contain_text(text, timeout=30_000)


def test_class_finder_records_only_an_explicit_choice_and_says_what_was_stored(served, page):
    from playwright.sync_api import expect

    _, paths = served
    db = store.open_db(paths.db)
    ready(page)
    finder, hint = page.locator("#al-class-search"), page.locator("#al-class-hint")
    first = item_on_screen(page)

    # opened with "/", left with Esc, then a click elsewhere: nothing recorded
    page.keyboard.press("/")
    expect(finder).to_be_focused()
    page.keyboard.press("Escape")
    expect(finder).not_to_be_focused()
    page.click("#al-counters")
    # an unknown name: Enter says so, and so does clicking away
    finder.click()
    page.keyboard.type("Hat")
    expect(page.locator("#al-class-buttons button:visible")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(hint).to_have_text('No class matches "Hat": nothing recorded.')
    page.click("#al-counters")
    expect(hint).to_have_text('"Hat" left without Enter: nothing recorded')
    expect(page.locator("#al-class-buttons button:visible")).to_have_count(10)
    # a name Enter would record (outlined), left with Esc or by clicking away: nothing recorded
    for leave in ("Escape", "click"):
        finder.click()
        page.keyboard.type("bag")
        expect(hint).to_have_text("Enter records Bag")
        if leave == "Escape":
            page.keyboard.press("Escape")
        else:
            page.click("#al-counters")
        expect(hint).to_have_text('"bag" left without Enter: nothing recorded')
    # z and Backspace type in the finder; Esc leaves it and nothing was undone or recorded
    finder.click()
    page.keyboard.type("zq")
    page.keyboard.press("Backspace")
    expect(finder).to_have_value("z")
    page.keyboard.press("Escape")
    expect(finder).not_to_be_focused()
    assert item_on_screen(page) == first

    # "Shi" matches Shirt and T-shirt/top: ↓ picks the best match, Shirt, and Enter records exactly it
    finder.click()
    page.keyboard.type("Shi")
    expect(hint).to_have_text("2 classes match: ↓ ↑ choose one, then Enter")
    page.keyboard.press("ArrowDown")
    expect(hint).to_have_text("Enter records Shirt")
    expect(page.locator("#al-class-buttons button:visible")).to_have_count(2)
    page.keyboard.press("Enter")
    expect_notice(page, f"Stored #{first}: ")
    action = decided_as(db, first, SHIRT)
    assert labels(db) == [(first, action, SHIRT)], "the finder recorded one decision, for Shirt"
    expect_notice(page, f"Stored #{first}: {action} → Shirt")
    expect(finder).to_have_value("")
    expect(finder).not_to_be_focused()

    # picking with the mouse after filtering records that class and says so
    second = item_on_screen(page)
    finder.click()
    page.keyboard.type("co")
    expect(hint).to_have_text("Enter records Coat")
    page.click("#al-class-4")
    expect_notice(page, f"Stored #{second}: ")
    action = decided_as(db, second, COAT)
    assert labels(db)[1:] == [(second, action, COAT)]
    expect_notice(page, f"Stored #{second}: {action} → Coat")
    expect(page.locator("#al-class-buttons button:visible")).to_have_count(10)

    # outside the finder z undoes the last decision: the Coat one
    page.keyboard.press("z")
    expect_notice(page, f"Undid {action} → Coat on #{second}: it is back on screen.")
    assert labels(db)[2:] == [(second, "undo", None)]
    assert stored(db, first) == (decided_as(db, first, SHIRT), SHIRT) and stored(db, second) is None
    assert item_on_screen(page) == second


def test_every_class_has_a_button_and_a_key_that_store_its_id(served, page):
    from playwright.sync_api import expect

    _, paths = served
    db = store.open_db(paths.db)
    ready(page)
    # a class named "3", as labels.db could hold before names were checked; the open page picks it up
    db.execute("INSERT INTO classes (id, name, fmnist_index, created_at) VALUES (10, '3', NULL, ?)", [store.now()])
    expect(page.locator("#al-class-10")).to_have_text("q · 3")
    expect(page.locator("#al-class-3")).to_have_text("4 · Dress")

    # the lead adds a class: typing its name in a text field decides nothing, Esc leaves the field
    page.get_by_text("Classes (lead)").click()
    new_class = page.locator("#al-new-class textarea, #al-new-class input").first
    new_class.press_sequentially("Sax 1")
    page.click("#al-add-class")
    expect(page.locator("#al-class-message")).to_contain_text("Added class Sax 1")
    expect(page.locator("#al-class-11")).to_have_text("w · Sax 1")
    expect(page.locator("#al-keys")).to_contain_text("0 Ankle boot · q 3 · w Sax 1")
    new_class.click()
    page.keyboard.press("x")
    page.keyboard.press("Escape")

    # keys and buttons store the class id they show, even beside a class named "3"
    done = []
    for press, class_id in (("4", 3), ("q", 10), ("w", 11), ("click:al-class-8", BAG), ("click:al-class-11", 11)):
        item = item_on_screen(page)
        if press.startswith("click:"):
            page.click("#" + press.split(":")[1])
        else:
            page.keyboard.press(press)
        expect_notice(page, f"Stored #{item}: ")
        done.append((item, decided_as(db, item, class_id), class_id))
        assert labels(db) == done, f"{press} stored class id {class_id} and nothing else"
    # the finder reaches an added class too
    item = item_on_screen(page)
    page.keyboard.press("/")
    page.keyboard.type("sax")
    page.keyboard.press("Enter")
    expect_notice(page, f"Stored #{item}: ")
    assert labels(db)[-1] == (item, decided_as(db, item, 11), 11)


def counts_on_screen(page: Page) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(header: labeled, unlabeled) and (panel: labeled, skipped, rejected, unlabeled), read at one moment."""
    header, panel = page.evaluate("() => [document.querySelector('#al-header').innerText,"
                                  " document.querySelector('#al-counters').innerText]")
    found = HEADER_COUNTS.search(header), PANEL_COUNTS.search(panel)
    assert all(found), f"counts not found in {header!r} / {panel!r}"
    return tuple(tuple(int(n.replace(",", "")) for n in m.groups()) for m in found)


def counts_in_db(db) -> tuple[tuple[int, ...], tuple[int, ...]]:
    labeled = len(store.labeled_items(db))
    state = store.label_state(db, "pool")
    pool = db.execute("SELECT COUNT(*) FROM items WHERE split = 'pool'").fetchone()[0]
    actions = [action for action, _ in store.label_state(db).values()]
    return ((labeled, pool - len(state)),
            (labeled, actions.count("skip"), actions.count("reject"), pool - len(state)))


def test_counters_equal_labels_db_after_every_keyboard_decision(served, page):
    from playwright.sync_api import expect

    _, paths = served
    db = store.open_db(paths.db)
    ready(page)
    # another annotator decides three items the page does not hold; the next poll shows them
    held = {row[0] for row in db.execute("SELECT item_id FROM leases WHERE annotator = ?", [LEAD.name])}
    bobs = [item for item in store.unlabeled_pool(db) if item not in held][:3]
    for item, action, class_id in zip(bobs, ("confirm", "skip", "reject"), (BAG, None, None)):
        store.record_label(db, item, action, class_id=class_id, annotator="bob")
    (labeled, unlabeled), (_, skipped, rejected, _) = counts_in_db(db)
    expect(page.locator("#al-counters")).to_contain_text(
        f"{labeled} labeled · {skipped} skipped · {rejected} rejected · {unlabeled} unlabeled in pool")
    expect(page.locator("#al-header")).to_contain_text(f"{labeled} labeled · {unlabeled} unlabeled")

    # nothing covers the photo or its 28x28 conversion, and they sit side by side
    boxes = page.evaluate("""() => ['#al-original img', '#al-preview img'].map((s) => {
        const img = document.querySelector(s), r = img.getBoundingClientRect();
        const points = [[r.left + 3, r.top + 3], [r.right - 3, r.top + 3], [r.left + 3, r.bottom - 3],
                        [r.right - 3, r.bottom - 3], [(r.left + r.right) / 2, (r.top + r.bottom) / 2]];
        return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                covered: points.filter(([x, y]) => document.elementFromPoint(x, y) !== img).length};
    })""")
    photo, preview = boxes
    assert photo["covered"] == 0 and preview["covered"] == 0, "a label or badge lies over an image"
    assert photo["right"] <= preview["left"] and preview["top"] < photo["bottom"], "the conversion is beside the photo"
    # "why this item" gives the model's numbers
    item = item_on_screen(page)
    scores = scoring.score_items(paths)
    probs = scores.probs[scores.rows([item])[0]]
    top = sorted(probs, reverse=True)
    why = page.inner_text("#al-why")
    if "audit: picked at random" in why:   # the random audit slice (and holdout picks) give the model's top class
        assert f"the model says {store.class_names(db)[int(probs.argmax())]} {top[0]:.0%}" in why
    else:
        assert f"margin: top two {top[0]:.0%} vs {top[1]:.0%}" in why

    mine: list[int] = []  # ids of this annotator's effective events, newest last
    for key in KEYS:
        item = item_on_screen(page)
        page.keyboard.press(key)
        if key in ("Backspace", "z"):
            undone = db.execute("SELECT item_id FROM labels WHERE id = ?", [mine.pop()]).fetchone()[0]
            expect_notice(page, f"on #{undone}: it is back on screen.")
            assert labels(db)[-1] == (undone, "undo", None)
        else:
            expect_notice(page, f"Stored #{item}: ")
            event_id, action, class_id, predicted = db.execute(
                "SELECT id, action, class_id, predicted_class_id FROM labels ORDER BY id DESC LIMIT 1").fetchone()
            mine.append(event_id)
            want = {"a": predicted, "Enter": predicted, "Space": None, "s": None, "x": None}.get(
                key, "1234567890".find(key))
            assert class_id == want and action == {"Space": "skip", "s": "skip", "x": "reject"}.get(
                key, "confirm" if want == predicted else "correct"), key
        assert counts_on_screen(page) == counts_in_db(db), f"after {key}"
    assert db.execute("SELECT COUNT(*) FROM labels WHERE annotator = ?", [LEAD.name]).fetchone()[0] == len(KEYS)


def grid_state(page: Page) -> dict:
    """The grid as the page shows it: tile ids in order, which are drawn unticked, the cursor, ticked boxes."""
    return page.evaluate("""() => {
        const tiles = [...document.querySelectorAll('#al-gallery .thumbnail-item')];
        const id = (t) => Number(/#(\\d+)/.exec(t.textContent)[1]);
        return {ids: tiles.map(id), unticked: tiles.filter((t) => t.classList.contains('al-unticked')).map(id),
                cursor: tiles.filter((t) => t.classList.contains('al-cursor')).map(id),
                ticked: [...document.querySelectorAll('#al-ticked input:checked')]
                    .map((i) => Number(i.closest('label').textContent.trim().slice(1))),
                token: document.querySelector('#al-grid-page textarea, #al-grid-page input').value};
    }""")


def test_grid_by_keyboard_stores_exactly_the_ticked_as_the_page_class_then_advances(served, page):
    from playwright.sync_api import expect

    from activelearn.ui.label_tab import GRID_COLUMNS, GRID_SIZE
    from tests.helpers import add_items

    _, paths = served
    db = store.open_db(paths.db)
    add_items(paths, 250, start=5000)   # plain noise: the tiny model calls most of it one class
    ready(page)
    # the page the grid must open on: the class with most unlabeled items, minus what the one-by-one view holds
    scores = scoring.score_items(paths)
    pool = store.unlabeled_ids(db, "pool")
    predicted = scores.probs[scores.rows(pool)].argmax(1)
    largest = int(np.bincount(predicted).argmax())
    held = {row[0] for row in db.execute("SELECT item_id FROM leases WHERE annotator = ?", [LEAD.name])}
    expected = min(GRID_SIZE, int(sum(c == largest and i not in held for i, c in zip(pool, predicted))))
    assert expected == GRID_SIZE, "the home has a full page of one class"
    name = store.class_names(db)[largest]

    page.get_by_role("tab", name="Grid", exact=True).click()   # the page loads on entry, no other click
    expect(page.locator("#al-grid-notice")).to_contain_text(f"{GRID_SIZE} photos the model calls {name}",
                                                            timeout=60_000)
    expect(page.locator("#al-gallery .thumbnail-item")).to_have_count(GRID_SIZE)
    grid = grid_state(page)
    ids = grid["ids"]
    assert grid["ticked"] == ids and grid["unticked"] == [] and grid["cursor"] == [ids[0]]
    assert grid["token"] == ",".join(map(str, ids)) and not set(ids) & held
    assert {int(scores.probs[scores.rows([i])[0]].argmax()) for i in ids} == {largest}

    # arrows move the cursor, Space and x untick; x twice ticks again; a click unticks and a second ticks
    for key in ("ArrowRight", "ArrowRight", "Space", "ArrowDown", "x", "ArrowLeft", "x", "x"):
        page.keyboard.press(key)
    first, second = ids[2], ids[2 + GRID_COLUMNS]
    grid = grid_state(page)
    assert grid["cursor"] == [ids[1 + GRID_COLUMNS]] and sorted(grid["unticked"]) == sorted([first, second])
    assert sorted(set(ids) - set(grid["ticked"])) == sorted([first, second]), "what is drawn is what is ticked"
    tile = page.locator("#al-gallery .thumbnail-item").nth(5)
    tile.click()
    assert ids[5] in grid_state(page)["unticked"] and ids[5] not in grid_state(page)["ticked"]
    tile.click()
    assert ids[5] in grid_state(page)["ticked"]
    # keys do nothing while typing in a field; the one-by-one keys do nothing on the grid
    page.click("#al-grid-class input")
    for key in ("x", "Space", "a"):
        page.keyboard.press(key)
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    before = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    page.keyboard.press("1")
    page.keyboard.press("s")
    page.wait_for_timeout(300)
    assert grid_state(page)["ticked"] == [i for i in ids if i not in (first, second)]
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == before == 0

    # Enter confirms: exactly the ticked, as the page's class; the unticked stay unlabeled
    page.keyboard.press("Enter")
    expect(page.locator("#al-grid-notice")).to_contain_text(f"Confirmed {GRID_SIZE - 2} items as {name}",
                                                            timeout=60_000)
    ticked = [i for i in ids if i not in (first, second)]
    assert sorted(labels(db)) == sorted((i, "confirm", largest) for i in ticked)
    assert stored(db, first) is None and stored(db, second) is None
    # the next page is there already: new photos, all ticked, none of the last page's
    page.wait_for_function("old => document.querySelector('#al-grid-page textarea, #al-grid-page input').value"
                           " !== old", arg=grid["token"], timeout=60_000)
    following = grid_state(page)
    assert following["ids"] and not set(following["ids"]) & set(ids) and following["ticked"] == following["ids"]
    # the unticked photos come first in One by one, for a class of their own
    page.get_by_role("tab", name="One by one", exact=True).click()
    assert item_on_screen(page) == first
    counts = counts_on_screen(page)
    assert counts == counts_in_db(db)


def history_rows(page: Page) -> list[tuple[str, str]]:
    """(label, details) of each row of the history sidebar, top to bottom."""
    return [tuple(row) for row in page.eval_on_selector_all("#al-history [data-index]", """els => els.map((e) =>
        [e.querySelector('.al-history-label').textContent, e.querySelector('.al-history-meta').textContent])""")]


def test_history_reopens_a_decision_to_change_it_and_progress_agrees(served, page):
    from playwright.sync_api import expect

    _, paths = served
    db = store.open_db(paths.db)
    ready(page)
    names = store.class_names(db)
    done = []
    for key in ("a", "x", "3", "Space", "a"):
        item = item_on_screen(page)
        page.keyboard.press(key)
        expect_notice(page, f"Stored #{item}: ")
        done.append(item)
    expect(page.locator("#al-history [data-index]")).to_have_count(5)
    rows = db.execute("SELECT item_id, action, class_id FROM labels ORDER BY id DESC").fetchall()
    want = [({"skip": "skipped", "reject": "not a product"}.get(action, names[cls] if cls is not None else action),
             f"#{item} · {action} · ") for item, action, cls in rows]
    assert [(label, meta[:len(start)]) for (label, meta), (_, start) in zip(history_rows(page), want)] == want, \
        "newest first, as stored"
    progress = page.inner_text("#al-progress")
    assert f"You ({LEAD.name}): 5 decisions" in progress
    assert f"{len(store.labeled_items(db))} of 60 items labeled" in progress

    # a click on the rejected one (the 4th newest) puts it back on screen; a class key changes it
    rejected = done[1]
    page.locator("#al-history [data-index]").nth(3).click()
    expect_notice(page, f"Re-opened #{rejected}: you stored reject at ")
    assert item_on_screen(page) == rejected and "re-opened from your history" in page.inner_text("#al-why")
    page.keyboard.press("9")
    expect_notice(page, f"Stored #{rejected}: ")
    events = db.execute("SELECT action, class_id FROM labels WHERE item_id = ? ORDER BY id", [rejected]).fetchall()
    assert events[0] == ("reject", None) and events[1][1] == 8 and len(events) == 2, "a new event; the old one kept"
    assert stored(db, rejected) == (decided_as(db, rejected, 8), 8)
    expect(page.locator("#al-history [data-index]")).to_have_count(6)
    shown = history_rows(page)
    assert shown[0][0] == names[8] and shown[0][1].startswith(f"#{rejected} · ") and shown[4][1].endswith("(changed)")
    assert counts_on_screen(page) == counts_in_db(db)
    assert f"You ({LEAD.name}): 6 decisions" in page.inner_text("#al-progress")


def test_grad_cam_follows_the_item_on_screen_only_while_it_is_on(served, page):
    from playwright.sync_api import expect

    ready(page)
    cam = page.locator("#al-cam img")
    expect(page.locator("#al-cam")).to_be_hidden()
    page.locator("#al-cam-toggle input").check()
    expect(cam).to_be_visible(timeout=60_000)
    expect(page.locator("#al-cam-note")).to_contain_text("Grad-CAM of")
    first = cam.get_attribute("src")
    item = item_on_screen(page)
    page.keyboard.press("a")
    expect_notice(page, f"Stored #{item}: ")
    page.wait_for_function("old => document.querySelector('#al-cam img')?.src !== old", arg=first, timeout=60_000)
    page.locator("#al-cam-toggle input").uncheck()
    expect(page.locator("#al-cam")).to_be_hidden()
    item = item_on_screen(page)
    page.keyboard.press("a")
    expect_notice(page, f"Stored #{item}: ")
    page.wait_for_timeout(500)
    expect(page.locator("#al-cam")).to_be_hidden()


def test_an_older_header_arriving_late_never_replaces_a_newer_one(served, page):
    """A poll that read the counts just before a decision may answer just after it: the page keeps the newer."""
    from activelearn.ui import HEADER_ORDER_JS

    _, paths = served
    db = store.open_db(paths.db)
    ready(page)
    item = item_on_screen(page)
    page.keyboard.press("a")
    expect_notice(page, f"Stored #{item}: ")
    page.wait_for_function("seq => document.querySelector('#al-header [data-seq]')?.dataset.seq === String(seq)",
                           arg=store.last_event_id(db), timeout=30_000)
    kept = page.evaluate("""(source) => {
        const order = eval(source);
        const newer = "<div data-seq='7'>7 labeled</div>", older = "<div data-seq='6'>6 labeled</div>";
        window.alHeaderSeq = undefined;
        return [order(newer), order(older), order("<div data-seq='7'>7 labeled, job 40%</div>")];
    }""", HEADER_ORDER_JS)
    assert kept == ["<div data-seq='7'>7 labeled</div>", "<div data-seq='7'>7 labeled</div>",
                    "<div data-seq='7'>7 labeled, job 40%</div>"]
