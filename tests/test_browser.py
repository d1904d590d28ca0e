"""The page in headless Chromium: keyboard-only labeling, a grid page, a retraining's progress bar.

Also saves a screenshot of every tab to artifacts/screenshots/ (gitignored) and
checks that the page asks nothing of the internet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from activelearn import ingest, jobs, labeling, store
from activelearn.ui import build_app, launch_app
from activelearn.ui.auth import User, roles_of
from tests.helpers import free_port

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
LEAD = User("lee", "pw-lead", "lead")
#: Keys pressed, and the (action, class id) each records; None = the model's top class.
KEYS = [("Enter", ("confirm", None)), ("1", ("confirm", 0)), ("a", ("confirm", None)), ("s", ("skip", None)),
        ("x", ("reject", None)), ("3", ("confirm", 2)), ("Enter", ("confirm", None)), ("0", ("confirm", 9)),
        ("Enter", ("confirm", None)), ("2", ("confirm", 1))]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture
def served(seeded_home, photo_folder):
    """A real server with 60 imported photos; login as a lead."""
    ingest.import_paths(photo_folder, paths=seeded_home, holdout_fraction=0.1)
    demo = build_app(seeded_home, roles_of([LEAD]))
    port = free_port()
    launch_app(demo, seeded_home, [LEAD], port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", seeded_home
    finally:
        demo.close()
        db = store.open_db(seeded_home.db)
        for job in jobs.list_jobs(db):
            if job.active:
                jobs.cancel(db, job.id)
                jobs.wait(db, job.id, timeout_s=120)


@pytest.fixture
def page(served):
    from playwright.sync_api import sync_playwright

    url, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.outside_requests = []
        page.on("request", lambda r: r.url.startswith(url) or r.url.startswith(("data:", "blob:"))
                or page.outside_requests.append(r.url))
        page.goto(url)
        page.fill("input[type=text]", LEAD.name)
        page.fill("input[type=password]", LEAD.password)
        page.keyboard.press("Enter")
        # the hidden id box shows "0" before the first item arrives: wait for the item's reasons
        page.wait_for_function("() => document.querySelector('#al-why')?.innerText.includes('Why this item')",
                               timeout=60_000)
        yield page
        browser.close()


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


def screenshot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
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
    page.wait_for_function("() => parseFloat(document.querySelector('#al-job-progress')?.value) > 0",
                           timeout=180_000)
    first = float(page.get_attribute("#al-job-progress", "value"))
    page.wait_for_timeout(4_500)  # two header polls
    second = float(page.get_attribute("#al-job-progress", "value") or 1.0)
    assert second > first, "the progress bar moves while the job trains"
    job = jobs.list_jobs(db, limit=1)[0]
    assert job.params["epochs"] == 2 and job.params["fmnist_fraction"] == pytest.approx(0.1)
    screenshot(page, "train")

    for tab in ("Import", "Review", "Export"):
        open_tab(page, tab)
        if tab == "Review":  # show v1's per-class report rather than empty plots
            page.get_by_role("button", name="Show", exact=True).click()
            page.wait_for_selector("#al-tab-review [data-testid=matplotlib] img", timeout=60_000)
        screenshot(page, tab.lower())
    assert page.outside_requests == [], "the page must work without the internet"
