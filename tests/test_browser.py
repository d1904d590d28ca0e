"""The page in headless Chromium: keyboard-only labeling, a grid page, a retraining's progress bar,
relabeling from Browse, Review's results on opening it, and what an annotator sees.

Every wait is for a state of the page (a selector, a value), never a fixed time.
Also saves a screenshot of every tab to artifacts/screenshots/ (gitignored) and
checks that the page asks nothing of the internet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from activelearn import jobs, labeling, store
from tests.helpers import ANNOTATOR, CHROMIUM, LEAD, logged_in

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
#: Keys pressed, and the (action, class id) each records; None = the model's top class.
KEYS = [("Enter", ("confirm", None)), ("1", ("confirm", 0)), ("a", ("confirm", None)), ("s", ("skip", None)),
        ("x", ("reject", None)), ("3", ("confirm", 2)), ("Enter", ("confirm", None)), ("0", ("confirm", 9)),
        ("Enter", ("confirm", None)), ("2", ("confirm", 1))]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"),
]


def shown_item(page) -> str:
    return page.input_value("#al-item-id input")


def press(page, key: str) -> None:
    """Press a key and wait until the next item is on screen."""
    before = shown_item(page)
    page.keyboard.press(key)
    page.wait_for_function("old => { const v = document.querySelector('#al-item-id input').value;"
                           " return v && v !== old; }", arg=before, timeout=30_000)


def markdown(page, elem_id: str) -> str:
    return page.inner_text(f"#{elem_id} [data-testid=markdown]")


def settled(page) -> None:
    """Wait until no event is pending: every Gradio status tracker is hidden."""
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=status-tracker]')]"
                           ".every(t => t.classList.contains('hide'))", timeout=60_000)


def screenshot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    settled(page)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def test_keyboard_labeling_grid_page_retraining_progress_and_screenshots(page, served):
    _, paths = served
    db = store.open_db(paths.db)
    page.wait_for_function("() => document.querySelector('#al-header').innerText.includes('model v1')")
    header = page.inner_text("#al-header")
    assert "lee" in header and "(lead)" in header and "60 items" in header
    screenshot(page, "label")

    # ten decisions with the keyboard only
    expected = []
    for key, (action, class_id) in KEYS:
        item = int(shown_item(page))
        press(page, key)
        expected.append((item, action, class_id))
    rows = db.execute("SELECT item_id, action, class_id, predicted_class_id, annotator FROM labels "
                      "ORDER BY id").fetchall()
    assert len(rows) == 10 and {r[4] for r in rows} == {LEAD.name}
    for (item, action, class_id), row in zip(expected, rows):
        assert row[0] == item
        if action == "confirm":
            want = row[3] if class_id is None else class_id
            assert row[2] == want and row[1] == ("confirm" if want == row[3] else "correct")
        else:
            assert row[1] == action and row[2] is None
    assert "8 labeled · 1 skipped · 1 rejected" in markdown(page, "al-counters")

    # z undoes the last decision and shows that item again
    page.keyboard.press("z")
    page.wait_for_function("want => document.querySelector('#al-item-id input').value === want",
                           arg=str(expected[-1][0]), timeout=30_000)
    assert db.execute("SELECT action, item_id FROM labels ORDER BY id DESC LIMIT 1").fetchone() == \
        ("undo", expected[-1][0])

    # a grid page: click one photo to untick it, confirm the rest in one action
    probe = labeling.next_items(paths, annotator="probe", n=100, audit_fraction=0.0, take_lease=False)
    counts = {}
    for entry in probe:
        counts[entry.top3[0][0]] = counts.get(entry.top3[0][0], 0) + 1
    busiest = max(counts, key=counts.get)
    open_tab(page, "Grid")
    page.click("#al-grid-class input")
    page.get_by_role("option", name=busiest, exact=True).click()
    page.click("#al-grid-load")
    page.wait_for_selector("#al-gallery .thumbnail-item")
    thumbs = page.query_selector_all("#al-gallery .thumbnail-item")
    assert len(thumbs) >= 2
    thumbs[0].click()
    page.wait_for_function("n => document.querySelectorAll('#al-ticked input:checked').length === n",
                           arg=len(thumbs) - 1, timeout=30_000)
    unticked = int(page.inner_text("#al-gallery .caption-label").split("#")[1].split(" ")[0])
    screenshot(page, "label_grid")
    before = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    page.click("#al-grid-confirm")
    page.wait_for_function("() => document.querySelector('#al-grid-notice').innerText.includes('Confirmed')",
                           timeout=30_000)
    new = db.execute("SELECT item_id, action FROM labels WHERE id > (SELECT MAX(id) FROM labels) - ?",
                     [len(thumbs) - 1]).fetchall()
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == before + len(thumbs) - 1
    assert {a for _, a in new} == {"confirm"} and unticked not in {i for i, _ in new}
    open_tab(page, "One by one")
    assert shown_item(page) == str(unticked), "the unticked photo is next, for correction"

    # a retraining from the Train tab: the header's progress bar moves between two polls
    open_tab(page, "Train")
    page.get_by_label("Fine-tune the active CNN (minutes)").check()    # the CNN's widgets appear
    page.get_by_label("Epochs").fill("2")
    page.get_by_label("number input for Share of Fashion-MNIST per epoch").fill("0.1")
    page.get_by_label("number input for Share of Fashion-MNIST per epoch").press("Tab")
    page.get_by_role("button", name="Start training").click()
    bar = "#al-header .al-job-progress"
    page.wait_for_function(f"() => parseFloat(document.querySelector('{bar}')?.value) > 0", timeout=180_000)
    first = float(page.get_attribute(bar, "value"))
    # the next header poll that shows more progress, or the job's end (the bar then leaves the header)
    page.wait_for_function(f"first => {{ const b = document.querySelector('{bar}');"
                           f" return !b || parseFloat(b.value) > first; }}", arg=first, timeout=180_000)
    now = page.evaluate(f"() => document.querySelector('{bar}')?.value ?? null")
    job = jobs.list_jobs(db, limit=1)[0]
    assert job.params["epochs"] == 2 and job.params["fmnist_fraction"] == pytest.approx(0.1)
    assert (now is None and not job.active) or float(now) > first, "the progress bar moves while the job trains"
    assert page.query_selector("#al-tab-train .al-job-progress, #al-tab-train .al-job"), \
        "the Train tab draws the job as the header does"
    screenshot(page, "train")

    for tab in ("Import", "Browse", "Review", "Export"):
        open_tab(page, tab)
        if tab == "Review":
            page.wait_for_selector("#al-confusion [data-testid='cell-0-0']", timeout=120_000)
        if tab == "Browse":
            page.wait_for_selector("#al-browse-gallery .thumbnail-item", timeout=60_000)
        screenshot(page, tab.lower())
    assert page.outside_requests == [], "the page must work without the internet"


def test_relabel_from_browse_is_a_new_event_and_the_old_one_stays(served, page):
    _, paths = served
    db = store.open_db(paths.db)
    names = store.class_names(db)
    first_item = store.browse_items(db, limit=1)[0]["id"]
    store.record_label(db, first_item, "confirm", class_id=names.index("Coat"), annotator="bob")
    open_tab(page, "Browse")
    page.wait_for_selector("#al-browse-gallery .thumbnail-item", timeout=60_000)
    assert page.inner_text("#al-browse-gallery .caption-label") == f"#{first_item} Coat"
    page.locator("#al-browse-gallery .thumbnail-item").first.click()
    page.wait_for_function("want => document.querySelector('#al-browse-details')?.innerText.includes(want)",
                           arg=f"#{first_item}", timeout=30_000)
    assert "Coat (confirm by bob)" in markdown(page, "al-browse-details")
    page.click("#al-browse-class input")
    page.get_by_role("option", name="Bag", exact=True).click()
    page.click("#al-browse-set")
    page.wait_for_function("() => document.querySelector('#al-browse-relabel-note')?.innerText.includes('Stored')",
                           timeout=30_000)
    rows = db.execute("SELECT action, class_id, annotator FROM labels WHERE item_id = ? ORDER BY id",
                      [first_item]).fetchall()
    assert rows[0] == ("confirm", names.index("Coat"), "bob"), "the earlier event is kept"
    assert len(rows) == 2 and rows[1][1:] == (names.index("Bag"), LEAD.name) and rows[1][0] in ("confirm", "correct")
    assert store.label_state(db)[first_item][1] == names.index("Bag")
    page.wait_for_function("want => document.querySelector('#al-browse-gallery .caption-label')?.innerText === want",
                           arg=f"#{first_item} Bag", timeout=30_000)
    assert "Bag" in markdown(page, "al-browse-details")


def test_review_shows_the_active_version_on_opening_and_a_cell_opens_its_images(served, page):
    _, paths = served
    db = store.open_db(paths.db)
    holdout = [row["id"] for row in store.browse_items(db, split="holdout", limit=100)]
    for item in holdout:   # a labeled holdout, so the in-domain matrix has counts
        store.record_label(db, item, "confirm", class_id=0, annotator="bob")
    open_tab(page, "Review")
    # no button pressed: the heatmap of the active version fills in
    page.wait_for_selector("#al-confusion [data-testid='cell-0-1']", timeout=120_000)
    settled(page)   # a second refresh may still be drawing ("processing | 0.3s" over the summary)
    assert page.inner_text("#al-review-summary").startswith("v1 (active)")
    assert f"{len(holdout)} of 60 items labeled" in page.inner_text("#al-review-goal")
    cells = page.locator("#al-confusion [data-testid^='cell-']")
    shown = [c for c in (cells.nth(i) for i in range(cells.count())) if c.get_attribute("data-testid")
             .split("-")[2] != "0" and c.inner_text().strip()]
    assert shown, "some cell has a count"
    count = int(shown[0].inner_text())
    shown[0].click()
    page.wait_for_selector("#al-cell-gallery .thumbnail-item", timeout=60_000)
    assert page.locator("#al-cell-gallery .thumbnail-item").count() == count
    assert page.inner_text("#al-cell-note").startswith(f"{count} item(s)")


def test_an_annotator_sees_label_browse_and_a_read_only_review(served, browser):
    url, paths = served
    page = logged_in(browser, url, ANNOTATOR)
    settled(page)
    shown = page.get_by_role("tab").all_inner_texts()
    assert {"Label", "Browse", "Review"} <= set(shown)
    assert not {"Import", "Train", "Export"} & set(shown), f"lead tabs shown to an annotator: {shown}"
    open_tab(page, "Review")
    page.wait_for_selector("#al-confusion [data-testid='cell-0-0']", timeout=120_000)
    assert "Label errors" not in page.get_by_role("tab").all_inner_texts()
    assert page.get_by_role("button", name="Scan for label errors").count() == 0
    open_tab(page, "Browse")
    page.wait_for_selector("#al-browse-gallery .thumbnail-item", timeout=60_000)
    assert not page.locator("#al-browse-split").is_visible(), "which items are holdout is a lead's view"
    screenshot(page, "annotator_browse")

