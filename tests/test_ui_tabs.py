"""The lead's tabs (Import, Train, Review, Export) through their handlers, on a real labels.db and tiny model.

One training job runs for the whole module (the `trained` fixture starts it via
the Train tab's handler and polls it via the timer's handler); every other test
works on a fresh seeded home.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections import Counter
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from activelearn import holdout, registry, store
from activelearn.config import resolve_paths
from activelearn.ui import export_tab, import_tab, review_tab, train_tab
from activelearn.ui.context import ACTION_PHRASES, UIContext
from tests.helpers import free_port

TINY_TRAINING = {"mode": "finetune", "epochs": 1, "fmnist_fraction": 0.02}
LEAD = gr.Request(username="lena")
ANNOTATOR = gr.Request(username="ann")
ROLES = {"lena": "lead", "ann": "annotator"}


def refused(action: str) -> str:
    return f"ann \\(annotator\\) may not {ACTION_PHRASES[action]}"


@pytest.fixture(autouse=True)
def import_roots(tmp_path, monkeypatch):
    """The server-folder box reads only ACTIVELEARN_IMPORT_ROOTS: here, the test's temporary folder."""
    monkeypatch.setenv("ACTIVELEARN_IMPORT_ROOTS", str(tmp_path))


def labeled_import(paths, folder, holdout_fraction=0.3):
    ctx = UIContext(paths, ROLES)
    with pytest.MonkeyPatch.context() as patch:   # also for the module-scoped `trained` home
        patch.setenv("ACTIVELEARN_IMPORT_ROOTS", str(Path(folder).parent))
        return import_tab.import_files(ctx, None, str(folder), True, holdout_fraction, LEAD)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fmnist_dir, tiny_model, fmnist):
    """A home with v1 (tiny model), 60 labeled photos (30% holdout) and v2 trained via the Train tab."""
    from activelearn.synthetic import write_product_photos

    root = tmp_path_factory.mktemp("trained")
    paths = resolve_paths(root / "home", fmnist_dir)
    registry.register(paths.models, *tiny_model, activate_now=True)
    write_product_photos(root / "photos", fmnist.x_test[:60], fmnist.y_test[:60], fmnist.class_names,
                         label_folders=True, seed=1)
    labeled_import(paths, root / "photos")
    ctx = UIContext(paths, ROLES)
    started = train_tab.start_training(ctx, TINY_TRAINING["mode"], TINY_TRAINING["epochs"],
                                       TINY_TRAINING["fmnist_fraction"], False, LEAD)
    polls, seen, deadline = [], None, time.monotonic() + 600
    while time.monotonic() < deadline:
        outputs = train_tab.job_status(ctx, seen)
        seen = outputs[0]
        polls.append(outputs)
        if seen and seen[1] not in ("queued", "running"):
            break
        time.sleep(0.5)
    return paths, started, polls


# ---------------------------------------------------------------- import

def test_import_uploads_and_server_folder_with_report_and_preview(seeded_home, photo_folder, fmnist, tmp_path):
    from activelearn.synthetic import write_product_photos

    uploads = tmp_path / "uploads"
    write_product_photos(uploads, fmnist.x_test[100:104], fmnist.y_test[100:104], fmnist.class_names,
                         label_folders=False, seed=2)
    loose = sorted(uploads.glob("*.jpg"))
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for photo in loose[2:]:
            bundle.write(photo, photo.name)
    broken = uploads / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    ctx = UIContext(seeded_home, ROLES)

    summary, rejected, gallery = import_tab.import_files(
        ctx, [str(loose[0]), str(loose[1]), str(archive), str(broken)], str(photo_folder), True, 0.2, LEAD)

    db = store.open_db(seeded_home.db)
    sources = dict(db.execute("SELECT source, COUNT(*) FROM items GROUP BY source").fetchall())
    assert sources == {"upload": 2, "archive": 2, "folder": 60}
    assert "**Added 64**" in summary and "pre-labeled from folders 60" in summary
    assert rejected.to_dict("records") == [{"file": "broken.jpg", "outcome": rejected["outcome"][0]}]
    assert rejected["outcome"][0].startswith("rejected: not an image")
    assert len(gallery) == import_tab.PREVIEW_ITEMS
    preview, caption = gallery[0]
    assert preview.size == (2 * import_tab.THUMB_SIDE + 8, import_tab.THUMB_SIDE) and caption.startswith("#1 ")
    assert sum(store.status(db).as_dict()["labeled_per_class"]["holdout"].values()) > 0


def test_import_reimport_counts_duplicates(seeded_home, photo_folder):
    labeled_import(seeded_home, photo_folder)
    summary, rejected, gallery = labeled_import(seeded_home, photo_folder)
    assert "**Added 0** · duplicates skipped 60" in summary and gallery == []
    assert len(rejected) == 60 and set(rejected["outcome"]) == {"skipped: byte-identical to a photo already imported"}


def test_lead_only_handlers_refuse_an_annotator(seeded_home, photo_folder):
    ctx = UIContext(seeded_home, ROLES)
    with pytest.raises(gr.Error, match=refused("import")):
        import_tab.import_files(ctx, None, str(photo_folder), True, 0.1, ANNOTATOR)
    with pytest.raises(gr.Error, match=refused("train")):
        train_tab.start_training(ctx, "finetune", 1, 0.02, False, ANNOTATOR)
    with pytest.raises(gr.Error, match=refused("train")):
        train_tab.cancel_training(ctx, ANNOTATOR)
    with pytest.raises(gr.Error, match=refused("activate")):
        train_tab.activate_version(ctx, "v1", ANNOTATOR)
    with pytest.raises(gr.Error, match=refused("export")):
        export_tab.export(ctx, "csv", [], False, False, None, "", "", True, ANNOTATOR)
    with pytest.raises(gr.Error, match=refused("fix-labels")):
        review_tab.find_label_issues(ctx, ANNOTATOR)
    db = store.open_db(seeded_home.db)
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_import_without_input_is_an_error_not_a_crash(seeded_home, tmp_path):
    with pytest.raises(gr.Error, match="choose files"):
        import_tab.import_files(UIContext(seeded_home), None, "  ", False, 0.1, None)
    with pytest.raises(gr.Error, match="holdout fraction"):
        import_tab.import_files(UIContext(seeded_home), None, str(tmp_path), False, 1.5, None)
    with pytest.raises(gr.Error, match="no such file or folder"):
        import_tab.import_files(UIContext(seeded_home), None, str(tmp_path / "nonexistent"), False, 0.1, None)


# ---------------------------------------------------------------- train

@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_training_job_polled_to_completion(trained):
    paths, started, polls = trained
    assert "**Job 1 (train): queued**" in started or "**Job 1 (train): running**" in started
    finished = polls[-1]
    assert finished[0][1] == "succeeded", finished[1]
    assert "v2 activated" in finished[1] or "v2 kept inactive" in finished[1]
    reason = registry.read_card(paths.models, "v2")["activation"]["reason"]
    assert reason in finished[1]  # the activation reason is shown
    assert "last job 1: succeeded v2" in finished[2]   # components.job_progress, as in the header
    assert isinstance(finished[3], Figure)
    assert list(finished[4]["version"]) == ["v1", "v2"] and isinstance(finished[6], Figure)
    running = [p for p in polls if p[0] and p[0][1] == "running"]
    assert running, "the poll never saw the job running"
    drawn = [p[2] for p in running if isinstance(p[2], str)]   # an unchanged row skips its outputs
    assert drawn and all("<progress class='al-job-progress'" in bar for bar in drawn), "the header's bar"
    # an unchanged job row skips every display output
    again = train_tab.job_status(UIContext(paths, ROLES), finished[0])
    assert again[0] == finished[0] and all(o == gr.skip() for o in again[1:])


@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_only_one_training_job_and_cancel_without_job(trained):
    paths, _, _ = trained
    ctx = UIContext(paths, ROLES)
    with pytest.raises(gr.Error, match="no training job is running"):
        train_tab.cancel_training(ctx, LEAD)


@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_versions_table_and_activate_roll_back(trained):
    paths, _, _ = trained
    ctx = UIContext(paths, ROLES)
    table = train_tab.versions_table(ctx)
    assert list(table["version"]) == ["v1", "v2"]
    v2 = table.set_index("version").loc["v2"]
    card = registry.read_card(paths.models, "v2")
    assert v2["Fashion-MNIST acc"] == round(card["metrics"]["fmnist_test"]["accuracy"], 4)
    assert v2["holdout n"] == card["metrics"]["holdout"]["n"] > 0
    assert v2["human labels"] == card["human_labels_used"]["train"] > 0
    assert v2["parent"] == "v1" and card["activation"]["reason"] in v2["activation"]

    before = registry.active_version(paths.models)
    try:
        note, table, choices, history = train_tab.activate_version(ctx, "v1", LEAD)
        assert registry.active_version(paths.models) == "v1" and note.startswith("v1 is now")
        assert table.set_index("version").loc["v1", "active"] == "✔" and choices.value == "v1"
        assert isinstance(history, Figure)
        train_tab.activate_version(ctx, "v2", LEAD)
        assert registry.active_version(paths.models) == "v2"
        with pytest.raises(gr.Error, match="not found|missing"):
            train_tab.activate_version(ctx, "v9", LEAD)
        assert registry.active_version(paths.models) == "v2"
    finally:
        registry.activate(paths.models, before)


# ---------------------------------------------------------------- review

@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_review_per_class_with_support_and_figures(trained):
    paths, _, _ = trained
    ctx = UIContext(paths)
    summary, table, bars, heatmap = review_tab.review(ctx, "v2", "holdout")
    db = store.open_db(paths.db)
    names = store.class_names(db)
    holdout = dict(Counter(names[c] for _, c in store.labeled_holdout(db, "report")))
    support = dict(zip(table["class"], table["report n"]))
    assert {name: n for name, n in support.items() if n} == holdout
    fmnist_support = table["FMNIST n"].sum()
    assert fmnist_support == registry.read_card(paths.models, "v2")["metrics"]["fmnist_test"]["n"] == 10000
    assert isinstance(bars, Figure)
    assert heatmap.data.iloc[:, 1:].to_numpy().sum() == sum(holdout.values())   # one table: the heatmap
    assert "**v2**" in summary


@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_confusion_cell_gallery_holdout_and_fmnist(trained):
    paths, _, _ = trained
    ctx = UIContext(paths)
    matrix = review_tab.review(ctx, "v2", "holdout")[3].data
    counts = matrix.set_index("true \\ predicted")
    true_name, pred_name = counts.stack().idxmax()
    gallery, note = review_tab.confusion_cell(ctx, "v2", "holdout", true_name, pred_name)
    assert len(gallery) == counts.loc[true_name, pred_name] > 0
    assert all(isinstance(image, Image.Image) for image, _ in gallery)
    assert note.startswith(f"{counts.loc[true_name, pred_name]} item(s)")
    row, column = list(counts.index).index(true_name), 1 + list(counts.columns).index(pred_name)
    clicked, clicked_note = review_tab.confusion_cell_at(ctx, "v2", "holdout", matrix, row, column)  # a click
    assert clicked_note == note and len(clicked.value) == len(gallery) and clicked.visible
    assert review_tab.confusion_cell_at(ctx, "v2", "holdout", matrix, row, 0) == (gr.skip(),) * 2
    assert review_tab.confusion_cell(ctx, "v2", "holdout", "Hat", pred_name) == (
        [], "no class 'Hat' in In-domain holdout (report part) for v2")

    card_matrix = np.array(registry.read_card(paths.models, "v2")["metrics"]["fmnist_test"]["confusion_matrix"])
    off = card_matrix - np.diag(np.diag(card_matrix))
    true_id, pred_id = np.unravel_index(off.argmax(), off.shape)
    names = list(registry.read_card(paths.models, "v2")["class_names"])
    gallery, note = review_tab.confusion_cell(ctx, "v2", "fmnist_test", names[true_id], names[pred_id])
    assert note.startswith(f"{card_matrix[true_id, pred_id]} item(s)")  # same model, same counts
    assert len(gallery) == min(card_matrix[true_id, pred_id], review_tab.MAX_GALLERY) > 0


@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_compare_versions_gives_per_class_deltas(trained):
    paths, _, _ = trained
    ctx = UIContext(paths)
    summary, deltas, bars = review_tab.compare_versions(ctx, "v1", "v2", "holdout")
    old = holdout.metrics(paths, "v1", "holdout")["per_class"]
    new = holdout.metrics(paths, "v2", "holdout")["per_class"]
    for row in deltas.to_dict("records"):
        if new[row["class"]]["support"]:
            expected = new[row["class"]]["accuracy"] - old[row["class"]]["accuracy"]
            assert row["Δ accuracy"] == pytest.approx(expected, abs=1e-4)
    assert "**v2 vs v1**" in summary and isinstance(bars, Figure)
    with pytest.raises(gr.Error, match="choose two versions"):
        review_tab.compare_versions(ctx, "v1", None, "holdout")


@pytest.mark.slow  # the `trained` fixture runs a training job process
def test_all_versions_side_by_side_and_holdout_sizes(trained):
    paths, _, _ = trained
    ctx = UIContext(paths)
    table, figure = review_tab.versions_side_by_side(ctx)
    assert list(table.columns)[0] == "class" and table.iloc[0]["class"] == "all"
    v2 = [c for c in table.columns if c.startswith("v2 cnn")][0]
    assert table.iloc[0][v2] == round(holdout.metrics(paths, "v2", "holdout")["accuracy"], 3)
    sizes = review_tab.holdout_sizes(ctx)
    db = store.open_db(paths.db)
    assert sizes["total"].sum() == len(store.labeled_holdout(db))
    assert sizes["report"].sum() == len(store.labeled_holdout(db, "report"))


def test_labeling_progress_paces_annotators_and_leaves_out_folder_prelabels(seeded_home, photo_folder):
    labeled_import(seeded_home, photo_folder)          # 60 pre-labels by "import", written in one go
    db = store.open_db(seeded_home.db)
    store.record_label(db, 1, "correct", class_id=3, annotator="alice")
    store.record_label(db, 2, "skip", annotator="alice")
    store.record_label(db, 3, "reject", annotator="alice")
    store.undo(db, annotator="alice")                 # takes the reject back: item 3 is the import's again
    ctx = UIContext(seeded_home)
    figure, table = review_tab.labeling_progress(ctx)
    assert list(table["annotator"]) == ["alice"], "pre-labels are not labeling work"
    alice = table.iloc[0]
    assert alice["decisions"] == 3 and pd.isna(alice["per hour"])   # written within a second: no pace yet
    assert (alice[["labeled", "skipped", "rejected"]] == [1, 1, 0]).all()   # her current labels
    assert isinstance(figure, Figure)
    bars = figure.axes[0]
    assert sum(patch.get_height() for patch in bars.patches) == 3 and bars.get_ylim()[0] == 0
    goal = review_tab.goal_summary(ctx)
    counts = store.status(db).as_dict()
    assert goal.startswith(f"**Progress:** {counts['labeled']} of 60 items labeled")
    assert f"{counts['unlabeled_pool']} left in the pool" in goal


def test_confusion_heatmap_is_one_shaded_table():
    metrics = {"per_class": {"Bag": {}, "Coat": {}, "Shirt": {}},
               "confusion_matrix": [[8, 2, 0], [0, 0, 0], [1, 0, 1]]}
    styled = review_tab.confusion_heatmap(metrics, [])
    assert styled.data.iloc[:, 1:].to_numpy().tolist() == metrics["confusion_matrix"]
    shown = gr.DataFrame(interactive=False).postprocess(styled)    # what the page receives
    assert shown.headers == [review_tab.CORNER, "Bag", "Coat", "Shirt"]
    display, styles = shown.metadata["display_value"], shown.metadata["styling"]
    assert display[0][1:] == ["8", "2", ""], "zeros are blank"
    def darkness(css: str) -> int:
        colour = css.split("background-color: #")[1][:6]
        return -sum(int(colour[i:i + 2], 16) for i in (0, 2, 4))

    assert darkness(styles[0][1]) > darkness(styles[0][2]) > darkness(styles[1][1])   # 80% > 20% > an empty row
    assert "color: white" in styles[0][1] and "color: black" in styles[0][2]
    assert styles[2][1] + "; font-weight: bold" == styles[2][3]   # half and half, the same shade; diagonal bold


def test_per_class_table_has_short_columns():
    metrics = {"per_class": {"Bag": {"accuracy": 0.5, "f1": 0.6, "support": 4}}}
    table = review_tab.per_class_table({"holdout": metrics, "holdout_selection": metrics, "fmnist_test": metrics})
    assert list(table.columns) == ["class", "report acc", "report F1", "report n", "selection acc", "selection F1",
                                   "selection n", "FMNIST acc", "FMNIST F1", "FMNIST n"]
    assert table.iloc[0].tolist() == ["Bag", 0.5, 0.6, 4] * 1 + [0.5, 0.6, 4, 0.5, 0.6, 4]


def test_learning_history_axis_runs_from_a_round_number_to_one():
    figure = Figure()
    axes = figure.subplots()
    axes.plot([0, 1, 2], [0.931, 0.9364, 0.94])
    train_tab.accuracy_scale(axes)
    assert axes.get_ylim() == (0.8, 1.0), "a half-point gain does not fill the plot"
    axes.plot([0, 1], [0.12, float("nan")])
    train_tab.accuracy_scale(axes)
    assert axes.get_ylim() == (0.0, 1.0)


# ---------------------------------------------------------------- label errors queue

def test_label_error_queue_fix_and_keep_record_events(seeded_home, photo_folder):
    labeled_import(seeded_home, photo_folder, holdout_fraction=0.0)
    db = store.open_db(seeded_home.db)
    names = store.class_names(db)
    trousers = [i for i, c in store.labeled_items(db) if names[c] == "Trouser"][:3]
    for item in trousers:  # flagrant mistakes (the other trousers keep their label, so the class exists)
        store.record_label(db, item, "correct", class_id=names.index("Bag"), annotator="bob")
    ctx = UIContext(seeded_home, ROLES)

    summary, gallery, table, choices = review_tab.find_label_issues(ctx, LEAD)
    flagged = set(table["item"])
    assert flagged & set(trousers), table
    assert len(gallery) == len(flagged) and "still open" in summary
    item = next(i for i in table["item"] if i in trousers)
    image, text, fix_choice = review_tab.issue_detail(ctx, item)
    assert isinstance(image, Image.Image) and "given **Bag**" in text

    with pytest.raises(gr.Error, match=refused("fix-labels")):
        review_tab.resolve_label_issue(ctx, item, "Trouser", ANNOTATOR)
    note, _, _, table, _ = review_tab.resolve_label_issue(ctx, item, "Trouser", LEAD)
    event = db.execute("SELECT action, class_id, annotator FROM labels ORDER BY id DESC LIMIT 1").fetchone()
    assert event == ("correct", names.index("Trouser"), "lena")
    assert item not in set(table["item"]) and "changed to Trouser" in note

    if len(table):
        kept = int(table["item"].iloc[0])
        given = names.index(table["given"].iloc[0])
        review_tab.resolve_label_issue(ctx, kept, None, LEAD)
        event = db.execute("SELECT action, class_id, annotator FROM labels ORDER BY id DESC LIMIT 1").fetchone()
        assert event == ("confirm", given, "lena")


# ---------------------------------------------------------------- export

def test_export_csv_and_fmnist_for_download(seeded_home, photo_folder):
    labeled_import(seeded_home, photo_folder)
    ctx = UIContext(seeded_home, ROLES)
    exports = seeded_home.data / "exports"

    files, summary, card = export_tab.export(ctx, "csv", [], False, False, None, "", "", True, LEAD)
    data, readme = (Path(f) for f in files)
    # the server keeps the export under data/exports; the page gets a link outside the file route's allowed paths
    assert data.suffix == ".csv" and readme.name == data.name + ".README.md" and data.parent != exports
    kept = exports / data.name
    assert kept.read_bytes() == data.read_bytes() and (exports / readme.name).read_text() == readme.read_text()
    rows = list(csv.DictReader(io.StringIO(data.read_text())))
    assert len(rows) == 60 and "**Exported 60 items**" in summary
    assert card == readme.read_text() and "# Curated dataset" in card

    files, summary, card = export_tab.export(ctx, "fmnist", ["Trouser", "Bag"], False, False, None, "",
                                             "", False, LEAD)
    assert len(files) == 1 and files[0].endswith(".zip") and (exports / Path(files[0]).name).is_file()
    with zipfile.ZipFile(files[0]) as bundle:
        assert "README.md" in bundle.namelist() and bundle.read("README.md").decode() == card
    db = store.open_db(seeded_home.db)
    names = store.class_names(db)
    wanted = [c for _, c in store.labeled_items(db, split="pool") if names[c] in ("Trouser", "Bag")]
    assert f"**Exported {len(wanted)} items**" in summary and "classes: Trouser, Bag" in card

    with pytest.raises(gr.Error, match="nothing to export"):
        export_tab.export(ctx, "jsonl", [], False, False, "nobody", "", "", True, LEAD)
    with pytest.raises(gr.Error, match="bad date"):
        export_tab.export(ctx, "csv", [], False, False, None, "yesterday", "", True, LEAD)


def test_export_names_never_collide(tmp_path):
    first = export_tab.export_target(tmp_path, "csv")
    first.write_text("")
    second = export_tab.export_target(tmp_path, "csv")
    assert second != first and second.parent == tmp_path and not second.exists()


# ---------------------------------------------------------------- through the server

def test_tab_handlers_through_gradio_client_enforce_roles(seeded_home, photo_folder):
    """The api names answer over HTTP, with the logged-in user's role applied server-side."""
    from gradio_client import Client, handle_file

    from activelearn.ui import build_app, launch_app
    from activelearn.ui.auth import User

    users = [User("lena", "pw-lead", "lead"), User("ann", "pw-ann", "annotator")]
    port = free_port()
    app = build_app(seeded_home, {u.name: u.role for u in users})
    _, url, _ = launch_app(app, seeded_home, users, port=port, prevent_thread_lock=True, quiet=True)
    try:
        lead = Client(url, auth=("lena", "pw-lead"), verbose=False)
        names = set(lead.view_api(return_format="dict", print_info=False)["named_endpoints"])
        assert {"/import_files", "/start_training", "/job_status", "/cancel_training", "/activate_version",
                "/versions", "/review", "/confusion_cell", "/compare_versions", "/labeling_progress",
                "/find_label_issues", "/label_issues", "/keep_label", "/fix_label", "/export"} <= names
        photos = sorted(photo_folder.rglob("*.jpg"))[:3]
        summary, _, gallery = lead.predict([handle_file(str(p)) for p in photos], "", False, 0.0,
                                           api_name="/import_files")
        assert "**Added 3**" in summary and len(gallery) == 3
        annotator = Client(url, auth=("ann", "pw-ann"), verbose=False)
        # the upload route itself refuses an annotator (HTTP 403) before any file is stored
        with pytest.raises(Exception, match="403 Forbidden"):
            annotator.predict([handle_file(str(p)) for p in photos], "", False, 0.0, api_name="/import_files")
        db = store.open_db(seeded_home.db)
        assert dict(db.execute("SELECT source, COUNT(*) FROM items GROUP BY source").fetchall()) == {"upload": 3}

        lead.predict(None, str(photo_folder), True, 0.0, api_name="/import_files")
        files, summary, _ = lead.predict("csv", [], False, False, None, "", "", True, api_name="/export")
        downloaded = [Path(f) for f in files]
        assert [p.suffix for p in downloaded] == [".csv", ".md"] and "**Exported 57 items**" in summary
        assert len(list(csv.DictReader(io.StringIO(downloaded[0].read_text())))) == 57
    finally:
        app.close()


def test_decisions_skip_the_queue_label_events_share_a_pool_and_polls_never_queue(seeded_home):
    """Gradio runs one request per queued event at a time unless told: five annotators' keys would
    queue, and the queue's bookkeeping was most of a decision's server time, so decisions skip it;
    loads and the timer stay queued, the only way a changed class list (a State) reaches the page."""
    from activelearn.ui import build_app, label_tab

    demo = build_app(seeded_home, {})
    fns = {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}
    for name in ("decide", "undo", "label_load", "key_confirm", "key_skip", "key_reject", "queue_options"):
        assert fns[name].queue is (name == "label_load"), name
        # gradio_client joins the queue even for unqueued events: there they share a pool too
        assert (fns[name].concurrency_limit, fns[name].concurrency_id) == (label_tab.LABEL_WORKERS, "label"), name
    assert label_tab.LABEL_WORKERS > 1
    assert fns["grad_cam"].queue is not False     # runs the model: queued, one at a time (Gradio's default)
    assert fns["header"].concurrency_limit is None
    assert fns["job_status"].concurrency_limit is None


def test_every_render_runs_one_at_a_time(seeded_home):
    """Two class-button renders at once corrupted the session's event table (seen in CI: a page left
    without its buttons), so every ``gr.render`` shares one concurrency group of one."""
    from activelearn.ui import build_app

    demo = build_app(seeded_home, {})
    renders = [fn for fn in demo.fns.values() if fn.renderable is not None]
    assert len(renders) >= 2                          # the Label tab's and the team queue's class buttons
    assert {(fn.concurrency_limit, fn.concurrency_id) for fn in renders} == {(1, "activelearn-render")}
