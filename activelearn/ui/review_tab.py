"""Review tab: how good is a version, where does it fail, how is labeling going, which labels look wrong.

Every figure comes from activelearn.holdout, which the activation decision
uses too: Fashion-MNIST test metrics from the version's card (the test set
never changes), in-domain holdout metrics computed now from the version's
cached scores over the items labeled in the holdout's report part (the part no
decision looks at), so a seed CNN and a photo model are compared on the same
items. The confusion matrix is one table shaded as a heatmap: clicking a cell
shows the images behind the count, so a lead sees *what* a version confuses.

The tab opens on the active version with its results shown, and on labeling
progress toward the end of the pool (activelearn.progress). Everyone may read
it; the label-error queue, which changes labels, is shown to leads only.
"""

from __future__ import annotations

from datetime import datetime, timezone

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib import colormaps, colors
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from activelearn import holdout, label_issues, progress, registry, reports, store
from activelearn.evaluate import compare_metrics
from activelearn.ui import team_section
from activelearn.ui.components import conversion_image, item_preview, user_error, user_errors
from activelearn.ui.context import UIContext

SPLITS = {"holdout": "In-domain holdout (report part)", "holdout_selection": "In-domain holdout (selection part)",
          "fmnist_test": "Fashion-MNIST test"}
#: Column prefixes of the per-class table: short, so ten columns fit the page.
SHORT = {"holdout": "report", "holdout_selection": "selection", "fmnist_test": "FMNIST"}
SHORT_LEGEND = ("report = in-domain holdout, the part no decision looks at · selection = the part the "
                "activation rule uses · FMNIST = Fashion-MNIST test · n = items of the class")
CORNER = "true \\ predicted"
MAX_GALLERY = 60
#: Current-label states counted per annotator in the progress table (store.BROWSE_STATUSES but unlabeled).
STATE_COLUMNS = {"labeled": "labeled", "skipped": "skipped", "rejected": "rejected"}


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
    """One row per class: accuracy, F1 and support (n) on each split, under short column names (SHORT)."""
    names = list(dict.fromkeys(name for m in metrics_by_split.values() for name in m.get("per_class", {})))
    rows = []
    for name in names:
        row: dict = {"class": name}
        for split, metrics in metrics_by_split.items():
            entry = metrics.get("per_class", {}).get(name, {})
            label = SHORT[split]
            row[f"{label} acc"] = None if entry.get("accuracy") is None else round(entry["accuracy"], 3)
            row[f"{label} F1"] = None if not entry.get("support") else round(entry["f1"], 3)
            row[f"{label} n"] = entry.get("support", 0)
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_heatmap(metrics: dict, class_names: list[str]) -> Styler:
    """The confusion matrix as one clickable table, each cell shaded by its share of the true class (row).

    Rows are true classes, columns predicted ones; shading by row share lets a small
    class's confusions show as clearly as a big one's. `.data` holds the plain counts.
    """
    names = list(metrics.get("per_class") or class_names)
    counts = np.asarray(metrics.get("confusion_matrix") or np.zeros((len(names), len(names))), np.int64)
    frame = pd.DataFrame(counts, columns=names)
    frame.insert(0, CORNER, names)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    blues = colormaps["Blues"]

    def cell_styles(table: pd.DataFrame) -> pd.DataFrame:
        styles = pd.DataFrame("", index=table.index, columns=table.columns)
        styles[CORNER] = "font-weight: bold"
        for (row, col), share in np.ndenumerate(shares):
            text = "white" if share > 0.5 else "black"
            weight = "; font-weight: bold" if row == col else ""
            styles.iloc[row, col + 1] = f"background-color: {colors.to_hex(blues(share))}; color: {text}{weight}"
        return styles

    # zeros are left blank, as in a printed confusion matrix: the few counts that matter stand out
    return frame.style.apply(cell_styles, axis=None).format(lambda n: f"{n:,}" if n else "", subset=names)


def review(ctx: UIContext, version: str | None, split: str) -> tuple:
    """(summary, per-class table, per-class accuracy figure, confusion heatmap) of a version (None: the active)."""
    with user_errors():
        version = _version(ctx, version)
        by_split = {key: split_metrics(ctx, version, key) for key in SPLITS}
    chosen = by_split[split]
    names = store.class_names(store.open_db(ctx.paths.db))
    lines = [f"**{version}**" + (" (active)" if version == registry.active_version(ctx.paths.models) else "")
             + " · " + " · ".join(f"{SPLITS[key]}: accuracy "
                                   + ("—" if m.get("accuracy") is None else f"{m['accuracy']:.4f}")
                                   + f" on {m.get('n', 0)} items" for key, m in by_split.items())]
    if not by_split["holdout"].get("n"):
        lines.append("No labeled holdout item yet: the Label queue serves a share of them as you label.")
    lines.append(f"**Confusion matrix of {version} on {SPLITS[split]}** (n={chosen.get('n', 0)}): rows are the "
                 "true class, columns the prediction, shading the share of the row; click a cell to see its images.")
    bars = reports.per_class_accuracy_figure({SPLITS[key]: m for key, m in by_split.items()}, names)
    return "\n\n".join(lines), per_class_table(by_split), bars, confusion_heatmap(chosen, names)


def confusion_cell(ctx: UIContext, version: str | None, split: str, true_class: str | None,
                   predicted_class: str | None) -> tuple[list, str]:
    """The images behind one confusion-matrix cell (at most MAX_GALLERY of them)."""
    if not true_class or not predicted_class:
        raise user_error("choose a true class and a predicted class")
    with user_errors():
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
                      row: int, column: int) -> tuple[gr.Gallery, str]:
    """A click on the heatmap: (the cell's gallery, shown only with images, note); the class-name column is inert."""
    if column == 0:
        return gr.skip(), gr.skip()
    gallery, note = confusion_cell(ctx, version, split, matrix_table.iloc[row, 0], matrix_table.columns[column])
    return gr.Gallery(value=gallery, visible=bool(gallery)), note


def confusion_cell_api(ctx: UIContext, version: str, split: str, true_class: str,
                       predicted_class: str) -> dict[str, object]:
    """/confusion_cell for scripts: the note and the captions (item ids) of one cell's images."""
    gallery, note = confusion_cell(ctx, version or None, split, true_class, predicted_class)
    return {"note": note, "items": [caption for _, caption in gallery]}


def compare_versions(ctx: UIContext, old: str | None, new: str | None, split: str) -> tuple:
    """Per-class deltas (new - old) on one split, and both versions' per-class accuracy side by side."""
    if not old or not new:
        raise user_error("choose two versions to compare")
    with user_errors():
        metrics = {version: split_metrics(ctx, version, split) for version in (old, new)}
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

def goal_summary(ctx: UIContext, now: datetime | None = None) -> str:
    """'N of M items labeled · left in the pool · decisions/h · ETA', from labels.db now."""
    db = store.open_db(ctx.paths.db)
    counts = store.status(db).as_dict()
    team = progress.paces(store.decision_times(db))
    estimate = progress.eta(counts["unlabeled_pool"], team, now or datetime.now(timezone.utc))
    return "**Progress:** " + progress.goal_line(counts["labeled"], sum(counts["items"].values()), estimate)


def labeling_progress(ctx: UIContext) -> tuple[Figure | None, pd.DataFrame]:
    """Decisions per time bin and annotator (bins sized to the span), and each annotator's pace and labels."""
    db = store.open_db(ctx.paths.db)
    decisions = store.decision_times(db)
    rows = []
    for pace in progress.paces(decisions):
        rows.append({"annotator": pace.annotator, "decisions": pace.decisions,
                     "per hour": None if pace.per_hour is None else round(pace.per_hour),
                     "labeling time": progress.duration_text(pace.active_s) if pace.active_s else "—",
                     **{column: store.count_items(db, annotator=pace.annotator, status=status)
                        for status, column in STATE_COLUMNS.items()},
                     "first": pace.first.strftime("%Y-%m-%d %H:%M"), "last": pace.last.strftime("%Y-%m-%d %H:%M")})
    table = pd.DataFrame(rows, columns=["annotator", "decisions", "per hour", "labeling time",
                                        *STATE_COLUMNS.values(), "first", "last"])
    return progress_figure(progress.binned(decisions)), table


def progress_figure(bins: progress.Binned) -> Figure | None:
    """Stacked bars of decisions per bin and annotator, with the running total on a second axis from 0."""
    if not bins.starts:
        return None
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    axes = figure.subplots()
    width = bins.width / 1.25   # a gap between bars, so one bin reads as one bar
    bottom = np.zeros(len(bins.starts))
    for annotator, counts in bins.counts.items():
        axes.bar(bins.starts, counts, width=width, bottom=bottom, align="edge", label=annotator)
        bottom += counts
    axes.set_ylabel(f"decisions per {progress.width_text(bins.width)}")
    axes.set_ylim(0, max(1, bottom.max()) * 1.1)
    total = axes.twinx()
    ends = [start + bins.width for start in bins.starts]
    total.step([bins.starts[0], *ends], [0, *bins.cumulative()], where="post", color="black", linewidth=1.5,
               label="all, cumulative")
    total.set_ylim(0, max(1, bins.cumulative()[-1]) * 1.05)
    total.set_ylabel("decisions (cumulative)")
    axes.set_title(f"Decisions per {progress.width_text(bins.width)} (UTC)")
    axes.grid(alpha=0.3, axis="y")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    handles = [*axes.get_legend_handles_labels()[0], *total.get_legend_handles_labels()[0]]
    axes.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="upper left")
    return figure


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
    with user_errors():
        label_issues.find_issues(ctx.paths)
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
        raise user_error("choose a flagged item")
    with user_errors():
        db = store.open_db(ctx.paths.db)
        class_id = None if not class_name else store.resolve_class(db, class_name).id
        event = label_issues.resolve_issue(db, int(item_id), class_id, annotator)
    verb = "kept" if event.action == "confirm" else "changed to"
    note = f"#{item_id}: label {verb} {store.class_names(db)[event.class_id]} (event {event.id} by {annotator})"
    return (note, *label_issue_queue(ctx))


# ---------------------------------------------------------------- layout

def _kept_version(ctx: UIContext, value: str | None) -> str | None:
    """`value` while it still names a version, else the active one."""
    return value if value in registry.list_versions(ctx.paths.models) else registry.active_version(ctx.paths.models)


def _version_choices(ctx: UIContext, value: str | None = None) -> gr.Dropdown:
    """The versions now, with `value` kept when it still exists, else the active one."""
    return gr.Dropdown(choices=registry.list_versions(ctx.paths.models), value=_kept_version(ctx, value))


def _version_dropdown(ctx: UIContext, label: str) -> gr.Dropdown:
    """Choices refresh when the tab opens and on focus; custom values let API callers name a version
    created since the page loaded (the handlers check it against the registry)."""
    return gr.Dropdown(registry.list_versions(ctx.paths.models), allow_custom_value=True,
                       value=registry.active_version(ctx.paths.models), label=label)


def build(ctx: UIContext) -> None:
    """Lay out the Review tab: results appear when it opens, for the active version."""
    names = store.class_names(store.open_db(ctx.paths.db))
    split_choices = [(label, key) for key, label in SPLITS.items()]
    goal = gr.Markdown(elem_id="al-review-goal")
    with gr.Tabs():
        with gr.Tab("Per class", id="per-class") as per_class_tab:
            with gr.Row():
                version = _version_dropdown(ctx, "Version")
                split = gr.Radio(split_choices, value="holdout", label="Confusion matrix of", scale=2)
            summary = gr.Markdown(elem_id="al-review-summary")
            heatmap = gr.DataFrame(interactive=False, show_label=False, elem_id="al-confusion",
                                   pinned_columns=1, max_height=620, buttons=["fullscreen"])
            cell_note = gr.Markdown(elem_id="al-cell-note")
            cell_gallery = gr.Gallery(label="Images in the cell", columns=10, height="auto", allow_preview=False,
                                      visible=False, elem_id="al-cell-gallery")
            table = gr.DataFrame(interactive=False, label="Per-class accuracy", max_height=620,
                                 pinned_columns=1, elem_id="al-per-class")
            gr.Markdown(SHORT_LEGEND)
            bars = gr.Plot(label="Per-class accuracy", elem_id="al-per-class-bars")
        with gr.Tab("Compare versions", id="compare"):
            with gr.Row():
                old = _version_dropdown(ctx, "Old version")
                new = _version_dropdown(ctx, "New version")
                compare_split = gr.Radio(split_choices, value="holdout", label="On", scale=2)
                compare = gr.Button("Compare", variant="primary")
            compare_note = gr.Markdown()
            deltas = gr.DataFrame(interactive=False, label="Per-class deltas (new − old)")
            compare_bars = gr.Plot(label="Per-class accuracy of both versions")
        with gr.Tab("All versions", id="all-versions") as all_tab:
            gr.Markdown("Per-class accuracy of every version, seed CNN and photo models alike, on the same "
                        "labeled holdout items (report part), and how many holdout items each class has.")
            side_table = gr.DataFrame(interactive=False, label="Holdout accuracy per class and version",
                                      pinned_columns=1)
            side_bars = gr.Plot(label="Per-class holdout accuracy of every version")
            sizes = gr.DataFrame(interactive=False, label="Labeled holdout items per class")
        with gr.Tab("Labeling progress", id="progress") as progress_tab:
            progress_plot = gr.Plot(label="Decisions over time", elem_id="al-progress-plot")
            per_annotator = gr.DataFrame(interactive=False, label="Pace and current labels per annotator",
                                         elem_id="al-per-annotator")
        with gr.Tab("Label errors", id="label-errors") as errors_tab:
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
        team_section.build(ctx)   # the Team sub-tab: agreement, consensus, the lead's disagreement queue
    ctx.page.only_for("fix-labels", errors_tab)   # an annotator's Review is read-only

    def on_cell_select(version, split, matrix_table: pd.DataFrame, event: gr.SelectData):
        return confusion_cell_at(ctx, version, split, matrix_table, *event.index)

    no_cell = (gr.Gallery(value=[], visible=False), "")

    def on_queue_select(choices_source: pd.DataFrame, event: gr.SelectData):
        item_ids = list(dict.fromkeys(choices_source["item"].tolist()))
        return gr.Dropdown(value=item_ids[event.index]) if event.index < len(item_ids) else gr.skip()

    def on_scan(request: gr.Request):
        return find_label_issues(ctx, request)

    def on_keep(item_id, request: gr.Request):
        return resolve_label_issue(ctx, item_id, None, request)

    def on_fix(item_id, class_name, request: gr.Request):
        return resolve_label_issue(ctx, item_id, class_name, request)

    def on_open(version_value, split_value):
        """Opening the tab: the versions now (keeping the one chosen), its results, the progress line."""
        chosen = _kept_version(ctx, version_value)
        return (_version_choices(ctx, chosen), goal_summary(ctx), *review(ctx, chosen, split_value), *no_cell)

    def refresh_versions(old_value, new_value, version_value):
        return _version_choices(ctx, version_value), _version_choices(ctx, old_value), \
            _version_choices(ctx, new_value)

    quiet = {"show_progress": "hidden"}
    review_outputs = [summary, table, bars, heatmap]
    queue_outputs = [queue_note, queue_gallery, queue_table, issue_item]
    ctx.page.tab.select(on_open, [version, split], [version, goal, *review_outputs, cell_gallery, cell_note],
                        api_visibility="private")
    per_class_tab.select(on_open, [version, split], [version, goal, *review_outputs, cell_gallery, cell_note],
                         api_visibility="private")
    gr.on([version.input, split.input], lambda v, s: (*review(ctx, v, s), *no_cell), [version, split],
          [*review_outputs, cell_gallery, cell_note], api_name="review")
    heatmap.select(on_cell_select, [version, split, heatmap], [cell_gallery, cell_note], api_visibility="private")
    def on_cell_api(version: str, split: str, true_class: str, predicted_class: str) -> dict:
        return confusion_cell_api(ctx, version, split, true_class, predicted_class)

    gr.api(on_cell_api, api_name="confusion_cell")
    for dropdown in (version, old, new):  # versions appear while the app runs
        dropdown.focus(refresh_versions, [old, new, version], [version, old, new], api_visibility="private",
                       **quiet)
    compare.click(lambda a, b, s: compare_versions(ctx, a, b, s), [old, new, compare_split],
                  [compare_note, deltas, compare_bars], api_name="compare_versions")
    all_tab.select(lambda: (*versions_side_by_side(ctx), holdout_sizes(ctx)), None,
                   [side_table, side_bars, sizes], api_name="versions_side_by_side")
    progress_tab.select(lambda: (goal_summary(ctx), *labeling_progress(ctx)), None,
                        [goal, progress_plot, per_annotator], api_name="labeling_progress")
    scan.click(on_scan, None, queue_outputs, api_name="find_label_issues")
    reload_queue.click(lambda: label_issue_queue(ctx), None, queue_outputs, api_name="label_issues")
    errors_tab.select(lambda: label_issue_queue(ctx), None, queue_outputs, api_visibility="private")
    queue_gallery.select(on_queue_select, queue_table, issue_item, api_visibility="private")
    issue_item.change(lambda i: issue_detail(ctx, i), issue_item, [issue_image, issue_text, fix_class],
                      api_name="label_issue_detail")
    keep.click(on_keep, issue_item, [resolve_note, *queue_outputs], api_name="keep_label")
    fix.click(on_fix, [issue_item, fix_class], [resolve_note, *queue_outputs], api_name="fix_label")
