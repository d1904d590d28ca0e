"""Export tab (leads): write the curated dataset with `export.export_dataset` and offer it for download.

Exports land in ``<home>/data/exports`` under a timestamped name, so each one
stays on the server as a record of what was handed out. Formats that write a
folder (imagefolder, fmnist) are written straight into a .zip, which is what a
browser can download.
"""

from __future__ import annotations

import zipfile
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr

from activelearn import store
from activelearn.export import CARD_NAME, FORMATS, ExportFilters, export_dataset
from activelearn.ui.components import annotators, user_error, user_errors
from activelearn.ui.context import UIContext
from activelearn.ui.security import downloadable

_SUFFIX = {"imagefolder": ".zip", "fmnist": ".zip", "csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}


def export_target(exports_dir: Path, fmt: str) -> Path:
    """A fresh timestamped path in exports_dir (two exports in the same second get -2, -3, ...)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    stem = f"activelearn-{fmt}-{stamp}"
    candidate, n = exports_dir / f"{stem}{_SUFFIX[fmt]}", 1
    while candidate.exists() or candidate.with_name(candidate.name + ".README.md").exists():
        n += 1
        candidate = exports_dir / f"{stem}-{n}{_SUFFIX[fmt]}"
    return candidate


def _card_text(card: Path) -> str:
    if card.suffix == ".zip":
        with zipfile.ZipFile(card) as bundle:
            return bundle.read(CARD_NAME).decode()
    return card.read_text()


def annotator_choices(ctx: UIContext) -> list[str]:
    return annotators(store.open_db(ctx.paths.db))


def export(ctx: UIContext, fmt: str, classes: list[str] | None, only_human_confirmed: bool,
           exclude_label_errors: bool, annotator: str | None, since: str, until: str,
           include_holdout: bool, request: gr.Request | None,
           progress: gr.Progress | None = None) -> tuple[list[str], str, str]:
    """Export with the chosen filters; returns (files to download, summary, dataset card). Lead only."""
    ctx.require(request, "export")
    if fmt not in FORMATS:
        raise user_error(f"choose a format: {', '.join(FORMATS)}")
    filters = ExportFilters(classes=tuple(classes or ()), only_human_confirmed=bool(only_human_confirmed),
                            exclude_label_errors=bool(exclude_label_errors), annotator=annotator or None,
                            since=(since or "").strip() or None, until=(until or "").strip() or None,
                            include_holdout=bool(include_holdout))

    def report_progress(done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc="exporting", unit="items")

    out = export_target(ctx.paths.data / "exports", fmt)
    with user_errors():
        result = export_dataset(ctx.paths, fmt, out, filters=filters, progress=report_progress)
    # exports are not in allowed_paths (annotators must not fetch them): hand out links in a temp folder
    files = downloadable([result.path] + ([] if result.card == result.path else [result.card]))
    per_split = ", ".join(f"{split} {sum(c.values())}" for split, c in result.counts.items())
    summary = [f"**Exported {result.total} items** ({per_split}) to `{result.path}`"]
    summary += [f"- warning: {w}" for w in result.warnings]
    return files, "\n".join(summary), _card_text(result.card)


def build(ctx: UIContext) -> None:
    gr.Markdown("Export the labeled items (confirmed or corrected) as a dataset. Holdout items "
                "become the test split. The file is kept under data/exports on the server.")
    with gr.Row():
        fmt = gr.Radio(list(FORMATS), value="imagefolder", label="Format",
                       info="imagefolder / fmnist are zipped; csv / jsonl / parquet come with a README")
        include_holdout = gr.Checkbox(value=True, label="Include holdout (as the test split)")
    with gr.Row():
        db = store.open_db(ctx.paths.db)
        classes = gr.Dropdown(store.class_names(db), multiselect=True, label="Classes (empty: all)")
        annotator = gr.Dropdown(annotator_choices(ctx), value=None, allow_custom_value=True,
                                label="Current label by annotator (empty: anyone)")
    with gr.Row():
        only_human = gr.Checkbox(label="Only human decisions (no folder pre-labels)")
        exclude_errors = gr.Checkbox(label="Leave out items with an open label issue")
        since = gr.Textbox(label="Decided since", placeholder="YYYY-MM-DD")
        until = gr.Textbox(label="Decided until", placeholder="YYYY-MM-DD")
    run = gr.Button("Export", variant="primary")
    summary = gr.Markdown()
    download = gr.File(label="Download", file_count="multiple", interactive=False, height=110, visible=False)
    card = gr.Markdown(label="Dataset card")

    def on_export(fmt, classes, only_human, exclude_errors, annotator, since, until, include_holdout,
                  request: gr.Request, progress=gr.Progress()):
        return export(ctx, fmt, classes, only_human, exclude_errors, annotator, since, until,
                      include_holdout, request, progress)

    run.click(on_export, [fmt, classes, only_human, exclude_errors, annotator, since, until, include_holdout],
              [download, summary, card], api_name="export").success(
        lambda: gr.File(visible=True), None, download, api_visibility="private")   # the box appears with files
    # classes and annotators grow while the app runs: refresh the choices when a list is opened
    classes.focus(lambda: gr.Dropdown(choices=store.class_names(store.open_db(ctx.paths.db))), None, classes,
                  api_visibility="private", show_progress="hidden")
    annotator.focus(lambda: gr.Dropdown(choices=annotator_choices(ctx)), None, annotator,
                    api_visibility="private", show_progress="hidden")
