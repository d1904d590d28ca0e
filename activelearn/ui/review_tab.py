"""Review tab: how good is a version, where does it fail, how is labeling going, which labels look wrong.

Every figure comes from activelearn.holdout, which the activation decision
uses too: Fashion-MNIST test metrics from the version's card (the test set
never changes), in-domain holdout metrics computed now from the version's
cached scores over the items labeled in the holdout's report part (the part no
decision looks at), so a seed CNN and a photo model are compared on the same
items. Clicking a confusion-matrix cell shows the images behind the count, so
a lead sees *what* a version confuses.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from activelearn import holdout, label_issues, registry, reports, store
from activelearn.errors import ActiveLearnError
from activelearn.evaluate import compare_metrics
from activelearn.ui.context import UIContext
from activelearn.ui.import_tab import conversion_image, item_preview

SPLITS = {"holdout": "In-domain holdout (report part)", "holdout_selection": "In-domain holdout (selection part)",
          "fmnist_test": "Fashion-MNIST test"}
MAX_GALLERY = 60
EVENT_ACTIONS = ("confirm", "correct", "skip", "reject", "undo")


def _shown(exc: ActiveLearnError) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def _version(ctx: UIContext, version: str | None) -> str:
    return version or registry.require_active(ctx.paths.models)


def split_metrics(ctx: UIContext, version: str, split: str) -> dict:
    return holdout.metrics(ctx.paths, version, split)


def holdout_sizes(ctx: UIContext) -> pd.DataFrame:
    """Labeled holdout items per class and part: how much evidence the in-domain figures rest on."""
    db = store.open_db(ctx.paths.db)
    names = store.class_names(db)
    counts = {part: np.bincount([c for _, c in store.labeled_holdout(db, part)], minlength=len(names))
              for part in store.HOLDOUT_PARTS}
    rows = [{"class": name, **{part: int(counts[part][i]) for part in store.HOLDOUT_PARTS},
             "total": int(sum(counts[part][i] for part in store.HOLDOUT_PARTS))} for i, name in enumerate(names)]
    return pd.DataFrame(rows)


def versions_side_by_side(ctx: UIContext) -> tuple[pd.DataFrame, Figure | None]:
    """Per-class holdout accuracy of every version (seed CNN and photo models) on the same report items."""
    names = store.class_names(store.open_db(ctx.paths.db))
    columns: dict[str, dict] = {}
    for row in registry.version_summaries(ctx.paths.models):
        if "error" in row:
            continue
        label = f"{row['version']} {row['kind']}" + (" (active)" if row["active"] else "")
        columns[label] = holdout.metrics(ctx.paths, row["version"], "holdout")
    table = pd.DataFrame({"class": names, **{
        label: [None if (m["per_class"].get(n) or {}).get("accuracy") is None
                else round(m["per_class"][n]["accuracy"], 3) for n in names] for label, m in columns.items()}})
    overall = {"class": "all", **{label: None if m["accuracy"] is None else round(m["accuracy"], 3)
                                  for label, m in columns.items()}}
    table = pd.concat([pd.DataFrame([overall]), table], ignore_index=True)
    figure = reports.per_class_accuracy_figure(columns, names) if columns else None
    return table, figure


# ---------------------------------------------------------------- per-class view

def per_class_table(metrics_by_split: dict[str, dict]) -> pd.DataFrame:
    """One row per class: accuracy, F1 and support on each split."""
    names = list(dict.fromkeys(name for m in metrics_by_split.values() for name in m.get("per_class", {})))
    rows = []
    for name in names:
        row: dict = {"class": name}
        for split, metrics in metrics_by_split.items():
            entry = metrics.get("per_class", {}).get(name, {})
            label = SPLITS[split]
            row[f"{label} acc"] = None if entry.get("accuracy") is None else round(entry["accuracy"], 4)
            row[f"{label} F1"] = None if not entry.get("support") else round(entry["f1"], 4)
            row[f"{label} support"] = entry.get("support", 0)
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_table(metrics: dict, class_names: list[str]) -> pd.DataFrame:
    """The confusion matrix as a table: rows true class, columns predicted class."""
    names = list(metrics["per_class"]) or class_names
    frame = pd.DataFrame(metrics["confusion_matrix"], columns=names)
    frame.insert(0, "true \\ predicted", names)
    return frame


def review(ctx: UIContext, version: str | None, split: str) -> tuple:
    """(summary, per-class table, per-class accuracy figure, confusion figure, confusion table)."""
    try:
        version = _version(ctx, version)
        by_split = {key: split_metrics(ctx, version, key) for key in SPLITS}
    except ActiveLearnError as exc:
        raise _shown(exc) from exc
    chosen = by_split[split]
    names = store.class_names(store.open_db(ctx.paths.db))
    lines = [f"**{version}**" + (" (active)" if version == registry.active_version(ctx.paths.models) else "")]
    for key, metrics in by_split.items():
        accuracy = "—" if metrics.get("accuracy") is None else f"{metrics['accuracy']:.4f}"
        lines.append(f"- {SPLITS[key]}: accuracy {accuracy} on {metrics.get('n', 0)} items")
    if not by_split["holdout"].get("n"):
        lines.append("- no labeled holdout item yet: label some (import puts a share of new photos there)")
    bars = reports.per_class_accuracy_figure(by_split, names)
    if chosen.get("n"):
        heatmap = reports.confusion_matrix_figure(np.asarray(chosen["confusion_matrix"]),
                                                  list(chosen["per_class"]),
                                                  f"{version} on {SPLITS[split]} (n={chosen['n']})")
    else:
        heatmap = None
    return "\n".join(lines), per_class_table(by_split), bars, heatmap, confusion_table(chosen, names)


def confusion_cell(ctx: UIContext, version: str | None, split: str, true_class: str | None,
                   predicted_class: str | None) -> tuple[list, str]:
    """The images behind one confusion-matrix cell (at most MAX_GALLERY of them)."""
    if not true_class or not predicted_class:
        raise gr.Error("choose a true class and a predicted class", print_exception=False)
    try:
        version = _version(ctx, version)
        if split in holdout.HOLDOUT_SPLITS:
            names = store.class_names(store.open_db(ctx.paths.db))
            part = holdout.holdout_set(store.open_db(ctx.paths.db), holdout.HOLDOUT_SPLITS[split])
            known, probs = holdout.version_probs(ctx.paths, version, part.item_ids, len(names))
            ids, true, predicted = part.item_ids[known], part.labels[known], probs.argmax(axis=1)
        else:  # the version's own classes: one added later has no Fashion-MNIST image
            names = registry.read_card(ctx.paths.models, version)["class_names"]
            if registry.model_kind(registry.read_card(ctx.paths.models, version)) == registry.PHOTO:
                return [], f"{version} is a photo model: it has no Fashion-MNIST test predictions"
            images, true, predicted = holdout.fmnist_test_predictions(ctx.paths, version)
    except ActiveLearnError as exc:
        raise _shown(exc) from exc
    unknown = [name for name in (true_class, predicted_class) if name not in names]
    if unknown:
        return [], f"no class {unknown[0]!r} in {SPLITS[split]} for {version}"
    hits = np.flatnonzero((true == names.index(true_class)) & (predicted == names.index(predicted_class)))
    if split in holdout.HOLDOUT_SPLITS:
        db = store.open_db(ctx.paths.db)
        gallery = [(item_preview(ctx.paths, store.get_item(db, int(ids[i]))), f"#{int(ids[i])}")
                   for i in hits[:MAX_GALLERY]]
    else:
        gallery = [(conversion_image(images[i]), f"test #{int(i)}") for i in hits[:MAX_GALLERY]]
    shown = f" (showing {MAX_GALLERY})" if len(hits) > MAX_GALLERY else ""
    return gallery, f"{len(hits)} item(s) of true class **{true_class}** predicted **{predicted_class}**{shown}"


def confusion_cell_at(ctx: UIContext, version: str | None, split: str, matrix_table: pd.DataFrame,
                      row: int, column: int) -> tuple:
    """A click on the confusion table: (true class, predicted class, gallery, note); the name column is inert."""
    if column == 0:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    true_class, predicted_class = matrix_table.iloc[row, 0], matrix_table.columns[column]
    return (gr.Dropdown(value=true_class), gr.Dropdown(value=predicted_class),
            *confusion_cell(ctx, version, split, true_class, predicted_class))


def compare_versions(ctx: UIContext, old: str | None, new: str | None, split: str) -> tuple:
    """Per-class deltas (new - old) on one split, and both versions' per-class accuracy side by side."""
    if not old or not new:
        raise gr.Error("choose two versions to compare", print_exception=False)
    try:
        metrics = {version: split_metrics(ctx, version, split) for version in (old, new)}
    except ActiveLearnError as exc:
        raise _shown(exc) from exc
    delta = compare_metrics(metrics[old], metrics[new])

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    rows = [{"class": name, f"{old} acc": rounded(d["accuracy_old"]), f"{new} acc": rounded(d["accuracy_new"]),
             "Δ accuracy": rounded(d["accuracy"]), "Δ precision": rounded(d["precision"]),
             "Δ recall": rounded(d["recall"]), "Δ F1": rounded(d["f1"]),
             "support": d["support_new"]} for name, d in delta["per_class"].items()]
    overall = ("—" if delta["accuracy"] is None else
               f"{delta['accuracy_old']:.4f} → {delta['accuracy_new']:.4f} ({delta['accuracy']:+.4f})")
    summary = f"**{new} vs {old}** on {SPLITS[split]} ({metrics[new].get('n', 0)} items): accuracy {overall}"
    figure = reports.per_class_accuracy_figure(metrics, list(delta["per_class"]))
    return summary, pd.DataFrame(rows), figure


# ---------------------------------------------------------------- labeling progress

def labeling_progress(ctx: UIContext) -> tuple[Figure | None, pd.DataFrame]:
    """Net decisions over time per annotator (an undo takes one back), and counts per action."""
    db = store.open_db(ctx.paths.db)
    events = pd.DataFrame(db.execute("SELECT created_at, annotator, action FROM labels ORDER BY id").fetchall(),
                          columns=["created_at", "annotator", "action"])
    counts = (events.pivot_table(index="annotator", columns="action", values="created_at",
                                 aggfunc="count", fill_value=0)
              .reindex(columns=list(EVENT_ACTIONS), fill_value=0)) if len(events) else \
        pd.DataFrame(columns=list(EVENT_ACTIONS))
    if not len(events):
        return None, counts.reset_index()
    counts["labeled"] = counts["confirm"] + counts["correct"]
    counts["first"] = events.groupby("annotator")["created_at"].min().str[:16].str.replace("T", " ")
    counts["last"] = events.groupby("annotator")["created_at"].max().str[:16].str.replace("T", " ")
    counts.columns.name = None
    table = counts.reset_index().sort_values("labeled", ascending=False)

    times = pd.to_datetime(events["created_at"], utc=True, format="ISO8601")
    hourly = times.max() - times.min() <= pd.Timedelta(days=2)
    unit = pd.Timedelta(hours=1) if hourly else pd.Timedelta(days=1)
    bucket = times.dt.floor(unit)
    events["net"] = np.where(events["action"] == "undo", -1, 1)
    per_bucket = events.assign(bucket=bucket).pivot_table(index="bucket", columns="annotator", values="net",
                                                          aggfunc="sum", fill_value=0)
    # start every line at zero one bucket before the first event, so even one bucket draws a step
    start = pd.DataFrame(0, index=[per_bucket.index.min() - unit], columns=per_bucket.columns)
    cumulative = pd.concat([start, per_bucket]).cumsum()
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    axes = figure.subplots()
    for annotator in cumulative.columns:
        axes.step(cumulative.index, cumulative[annotator], where="post", marker="o", label=annotator)
    if len(cumulative.columns) > 1:
        axes.step(cumulative.index, cumulative.sum(axis=1), where="post", color="black", linewidth=2,
                  label="all")
    axes.set_ylabel("decisions (cumulative)")
    axes.set_title(f"Labeling progress per {'hour' if hourly else 'day'} (UTC)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return figure, table


# ---------------------------------------------------------------- label errors queue

ISSUE_COLUMNS = ["item", "given", "suggested", "kind", "self-confidence", "other item"]


def label_issue_queue(ctx: UIContext) -> tuple[str, list, pd.DataFrame, gr.Dropdown]:
    """The open issues of the latest scan: (summary, gallery, table, item choices)."""
    db = store.open_db(ctx.paths.db)
    names = store.class_names(db)
    issues = label_issues.open_issues(db)
    scan = label_issues.last_scan(db)
    if scan is None:
        summary = "No scan yet: run one to flag labels that are probably wrong."
    else:
        summary = (f"Scan {scan['id']} at {scan['created_at'][:19].replace('T', ' ')} checked "
                   f"{scan['labeled']} labels and flagged {scan['flagged']}; **{len(issues)} still open**.")
    rows, gallery, seen = [], [], set()
    for issue in issues:
        confidence = None if issue.self_confidence is None else round(issue.self_confidence, 3)
        rows.append([issue.item_id, names[issue.given_class], names[issue.suggested_class], issue.kind,
                     confidence, issue.other_item_id])
        if issue.item_id not in seen and len(gallery) < MAX_GALLERY:
            seen.add(issue.item_id)
            gallery.append((item_preview(ctx.paths, store.get_item(db, issue.item_id)),
                            f"#{issue.item_id}: {names[issue.given_class]} → {names[issue.suggested_class]}?"))
    choices = list(dict.fromkeys(issue.item_id for issue in issues))
    return (summary, gallery, pd.DataFrame(rows, columns=ISSUE_COLUMNS),
            gr.Dropdown(choices=choices, value=choices[0] if choices else None))


def find_label_issues(ctx: UIContext, request: gr.Request | None) -> tuple:
    """Scan every label (confident learning + near-duplicate conflicts); replaces the open issues. Lead only."""
    ctx.require(request, "fix-labels")
    try:
        label_issues.find_issues(ctx.paths)
    except ActiveLearnError as exc:
        raise _shown(exc) from exc
    return label_issue_queue(ctx)


def issue_detail(ctx: UIContext, item_id: int | None) -> tuple[object, str, gr.Dropdown]:
    """The chosen flagged item, large, with its given and suggested label; the fix defaults to the suggestion."""
    db = store.open_db(ctx.paths.db)
    names = store.class_names(db)
    issues = [i for i in label_issues.open_issues(db) if item_id is not None and i.item_id == int(item_id)]
    if not issues:
        return None, "", gr.Dropdown(choices=names, value=None)
    issue = issues[0]
    item = store.get_item(db, issue.item_id)
    why = (f"self-confidence {issue.self_confidence:.3f}" if issue.self_confidence is not None
           else f"near-duplicate #{issue.other_item_id} is labeled {names[issue.suggested_class]}")
    text = (f"**#{issue.item_id}** {item['original_name']} ({item['split']}) · given **{names[issue.given_class]}**"
            f" · suggested **{names[issue.suggested_class]}** · {issue.kind}, {why}")
    return item_preview(ctx.paths, item), text, gr.Dropdown(choices=names, value=names[issue.suggested_class])


def resolve_label_issue(ctx: UIContext, item_id: int | None, class_name: str | None,
                        request: gr.Request | None) -> tuple:
    """Keep the given label (class_name None) or fix it, as a label event by this lead; returns the queue."""
    annotator = ctx.require(request, "fix-labels")
    if item_id is None:
        raise gr.Error("choose a flagged item", print_exception=False)
    try:
        db = store.open_db(ctx.paths.db)
        class_id = None if not class_name else store.resolve_class(db, class_name).id
        event = label_issues.resolve_issue(db, int(item_id), class_id, annotator)
    except ActiveLearnError as exc:
        raise _shown(exc) from exc
    verb = "kept" if event.action == "confirm" else "changed to"
    note = f"#{item_id}: label {verb} {store.class_names(db)[event.class_id]} (event {event.id} by {annotator})"
    return (note, *label_issue_queue(ctx))


# ---------------------------------------------------------------- layout

def _version_dropdown(ctx: UIContext, label: str, value: str | None = None) -> gr.Dropdown:
    """Choices refresh on focus; custom values let API callers name a version created since
    the page loaded (the handlers check it against the registry)."""
    return gr.Dropdown(registry.list_versions(ctx.paths.models), allow_custom_value=True,
                       value=value or registry.active_version(ctx.paths.models), label=label)


def build(ctx: UIContext) -> None:
    names = store.class_names(store.open_db(ctx.paths.db))
    split_choices = [(label, key) for key, label in SPLITS.items()]
    with gr.Tabs():
        with gr.Tab("Per class"):
            with gr.Row():
                version = _version_dropdown(ctx, "Version")
                split = gr.Radio(split_choices, value="holdout", label="Confusion matrix of")
                show = gr.Button("Show", variant="primary")
            summary = gr.Markdown()
            table = gr.DataFrame(interactive=False, label="Per-class accuracy (support = items of the class)")
            bars = gr.Plot(label="Per-class accuracy")
            heatmap = gr.Plot(label="Confusion matrix")
            matrix = gr.DataFrame(interactive=False, label="Confusion matrix: click a cell to see its images")
            with gr.Row():
                true_class = gr.Dropdown(names, label="True class")
                predicted_class = gr.Dropdown(names, label="Predicted class")
                cell = gr.Button("Show images")
            cell_note = gr.Markdown()
            cell_gallery = gr.Gallery(label="Images in the cell", columns=8, height="auto")
        with gr.Tab("Compare versions"):
            with gr.Row():
                old = _version_dropdown(ctx, "Old version")
                new = _version_dropdown(ctx, "New version")
                compare_split = gr.Radio(split_choices, value="holdout", label="On")
                compare = gr.Button("Compare", variant="primary")
            compare_note = gr.Markdown()
            deltas = gr.DataFrame(interactive=False, label="Per-class deltas (new − old)")
            compare_bars = gr.Plot(label="Per-class accuracy of both versions")
        with gr.Tab("All versions"):
            gr.Markdown("Per-class accuracy of every version, seed CNN and photo models alike, on the same "
                        "labeled holdout items (report part), and how many holdout items each class has.")
            side_button = gr.Button("Refresh", variant="primary")
            side_table = gr.DataFrame(interactive=False, label="Holdout accuracy per class and version")
            side_bars = gr.Plot(label="Per-class holdout accuracy of every version")
            sizes = gr.DataFrame(interactive=False, label="Labeled holdout items per class")
        with gr.Tab("Labeling progress"):
            progress_button = gr.Button("Refresh")
            progress_plot = gr.Plot(label="Decisions over time")
            per_annotator = gr.DataFrame(interactive=False, label="Events per annotator and action")
        with gr.Tab("Label errors"):
            gr.Markdown("Labels that are probably wrong: confident learning over out-of-sample "
                        "predictions, and near-duplicates with different labels. A lead keeps or fixes "
                        "each; the verdict is recorded as a label event.")
            with gr.Row():
                scan = gr.Button("Scan for label errors", variant="primary")
                reload_queue = gr.Button("Reload the queue")
            queue_note = gr.Markdown()
            queue_gallery = gr.Gallery(label="Flagged items (click one to review it)", columns=6, height="auto",
                                       allow_preview=False)
            queue_table = gr.DataFrame(headers=ISSUE_COLUMNS, interactive=False)
            with gr.Row(equal_height=False):
                issue_item = gr.Dropdown([], label="Flagged item", scale=1)
                issue_image = gr.Image(label="Original | 28x28", type="pil", interactive=False, scale=2)
                with gr.Column(scale=2):
                    issue_text = gr.Markdown()
                    fix_class = gr.Dropdown(names, label="Correct class")
                    with gr.Row():
                        keep = gr.Button("Keep the given label")
                        fix = gr.Button("Set the chosen class", variant="primary")
            resolve_note = gr.Markdown()

    def on_cell_select(version, split, matrix_table: pd.DataFrame, event: gr.SelectData):
        return confusion_cell_at(ctx, version, split, matrix_table, *event.index)

    def on_queue_select(choices_source: pd.DataFrame, event: gr.SelectData):
        item_ids = list(dict.fromkeys(choices_source["item"].tolist()))
        return gr.Dropdown(value=item_ids[event.index]) if event.index < len(item_ids) else gr.skip()

    def on_scan(request: gr.Request):
        return find_label_issues(ctx, request)

    def on_keep(item_id, request: gr.Request):
        return resolve_label_issue(ctx, item_id, None, request)

    def on_fix(item_id, class_name, request: gr.Request):
        return resolve_label_issue(ctx, item_id, class_name, request)

    def refresh_versions():
        choices = registry.list_versions(ctx.paths.models)
        return gr.Dropdown(choices=choices), gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)

    review_outputs = [summary, table, bars, heatmap, matrix]
    queue_outputs = [queue_note, queue_gallery, queue_table, issue_item]
    show.click(lambda v, s: review(ctx, v, s), [version, split], review_outputs, api_name="review")
    cell.click(lambda v, s, t, p: confusion_cell(ctx, v, s, t, p), [version, split, true_class, predicted_class],
               [cell_gallery, cell_note], api_name="confusion_cell")
    matrix.select(on_cell_select, [version, split, matrix], [true_class, predicted_class, cell_gallery, cell_note],
                  api_visibility="private")
    for dropdown in (version, old, new):  # versions appear while the app runs
        dropdown.focus(refresh_versions, None, [version, old, new], api_visibility="private",
                       show_progress="hidden")
    compare.click(lambda a, b, s: compare_versions(ctx, a, b, s), [old, new, compare_split],
                  [compare_note, deltas, compare_bars], api_name="compare_versions")
    side_button.click(lambda: (*versions_side_by_side(ctx), holdout_sizes(ctx)), None,
                      [side_table, side_bars, sizes], api_name="versions_side_by_side")
    progress_button.click(lambda: labeling_progress(ctx), None, [progress_plot, per_annotator],
                          api_name="labeling_progress")
    scan.click(on_scan, None, queue_outputs, api_name="find_label_issues")
    reload_queue.click(lambda: label_issue_queue(ctx), None, queue_outputs, api_name="label_issues")
    queue_gallery.select(on_queue_select, queue_table, issue_item, api_visibility="private")
    issue_item.change(lambda i: issue_detail(ctx, i), issue_item, [issue_image, issue_text, fix_class],
                      api_name="label_issue_detail")
    keep.click(on_keep, issue_item, [resolve_note, *queue_outputs], api_name="keep_label")
    fix.click(on_fix, [issue_item, fix_class], [resolve_note, *queue_outputs], api_name="fix_label")
