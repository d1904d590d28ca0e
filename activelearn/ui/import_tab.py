"""Import tab (leads): name a folder on the server (bulk) or upload photos or archives.

The handler calls `ingest.import_paths`, the function behind `activelearn
import`, and shows its report plus a preview of what the model will see: each
added photo beside its 28x28 conversion, so a lead spots a bad crop or a
dark-background batch before anyone labels it. The summary (counts, then the
report's warnings) and a table of what happened to each file not simply added
(rejected, skipped as a duplicate, imported but flagged as a near-duplicate)
sit at the top of the tab, above the inputs, so a long upload list cannot push
them out of sight. The server folder must lie under the import roots
(ACTIVELEARN_IMPORT_ROOTS, default ``<home>/data/incoming``), and uploads are
refused to annotators twice: by `security.RequestGuard` at Gradio's upload route
and by this handler.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from activelearn import jobs, store
from activelearn.backbones import DEFAULT_BACKBONE, get_spec, weights_path
from activelearn.config import Paths
from activelearn.convert import normalize_image, open_for_conversion
from activelearn.ingest import ImportReport, import_paths
from activelearn.ingest.sources import import_roots, within_roots
from activelearn.ui.components import user_error, user_errors
from activelearn.ui.context import UIContext

PREVIEW_ITEMS = 12
#: Rows of the per-file outcome table (a re-import of 20,000 photos would otherwise send 20,000).
OUTCOME_ROWS = 1000
THUMB_SIDE = 112


def item_preview(paths: Paths, item: dict) -> Image.Image:
    """The original photo (fitted on white) beside its 28x28 conversion scaled up 4x."""
    canvas = Image.new("RGB", (2 * THUMB_SIDE + 8, THUMB_SIDE), "white")
    try:
        with open_for_conversion(paths.home / (item["stored_path"] or ""), work_side=2 * THUMB_SIDE) as opened:
            original = ImageOps.contain(normalize_image(opened), (THUMB_SIDE, THUMB_SIDE))
        canvas.paste(original, ((THUMB_SIDE - original.width) // 2, (THUMB_SIDE - original.height) // 2))
    except (OSError, ValueError):  # original copy gone or unreadable: the conversion still shows
        canvas.paste((200, 200, 200), (0, 0, THUMB_SIDE, THUMB_SIDE))
    canvas.paste(conversion_image(item["pixels"]).convert("RGB"), (THUMB_SIDE + 8, 0))
    return canvas


def conversion_image(pixels: bytes | np.ndarray, side: int = THUMB_SIDE) -> Image.Image:
    """A 28x28 image (blob or array) scaled up without smoothing, as the model sees it."""
    array = np.frombuffer(pixels, np.uint8).reshape(28, 28) if isinstance(pixels, bytes) else pixels
    return Image.fromarray(np.ascontiguousarray(array, np.uint8), mode="L").resize((side, side), Image.NEAREST)


def preview_gallery(paths: Paths, item_ids: list[int]) -> list[tuple[Image.Image, str]]:
    db = store.open_db(paths.db)
    gallery = []
    for item_id in item_ids:
        item = store.get_item(db, item_id)
        caption = f"#{item_id} {item['original_name']} ({item['split']})"
        if item["flags"]:
            caption += f" [{item['flags']}]"
        if item["near_dup_of"] is not None:
            caption += f" [near-duplicate of #{item['near_dup_of']}: imported, flagged]"
        gallery.append((item_preview(paths, item), caption))
    return gallery


def _upload_paths(files: list | None) -> list[str]:
    """gr.File gives paths (str) or file objects with .name depending on the caller."""
    return [f if isinstance(f, str) else getattr(f, "name", None) or f["path"] for f in files or []]


def server_roots(ctx: UIContext) -> list[Path]:
    """The folders the server-folder box may read (ACTIVELEARN_IMPORT_ROOTS, else <home>/data/incoming)."""
    return import_roots(ctx.paths.data / "incoming")


def import_files(ctx: UIContext, files: list | None, folder: str, label_from_folders: bool,
                 holdout_fraction: float, request: gr.Request | None,
                 progress: gr.Progress | None = None, url_lists: bool = False,
                 ) -> tuple[str, pd.DataFrame, list]:
    """Import uploads (source "upload", archives "archive") and/or a server folder under the import roots; lead only.

    Returns the summary (shown at the top of the tab), one row per file that was not simply
    added (rejected, skipped as a duplicate, or imported but flagged as a near-duplicate) and
    the conversion preview.
    """
    ctx.require(request, "import")
    uploads = _upload_paths(files)
    inputs: list[str] = list(uploads)
    roots = server_roots(ctx)
    if folder and folder.strip():
        with user_errors():
            inputs.append(str(within_roots(folder.strip(), roots)))
    if not inputs:
        raise user_error("choose files to upload or type a folder path on the server")

    def report_progress(done: int, total: int | None) -> None:
        if progress is not None:
            progress((done, total), desc="importing", unit="files")

    with user_errors():
        report = import_paths(inputs, paths=ctx.paths, label_from_folders=bool(label_from_folders),
                              holdout_fraction=float(holdout_fraction), annotator=store.IMPORT_ANNOTATOR,
                              progress=report_progress, url_lists=bool(url_lists), confine_to=roots)

    def shown(name: str) -> str:
        """An upload's temporary folder means nothing to the user: show the file (or archive:member) name."""
        for upload in uploads:
            if name == upload or name.startswith(upload + ":"):
                return Path(upload).name + name[len(upload):]
        return name

    outcomes = outcome_rows(ctx, report, shown)
    lines = [f"**Added {report.added}** · duplicates skipped {report.duplicates} · near-duplicates imported and "
             f"flagged {report.near_duplicates} · pre-labeled from folders {report.labeled} · "
             f"rejected {len(report.rejected)}"]
    lines += [f"- warning: {w}" for w in report.warnings]
    if report.duplicates or report.near_duplicates:
        lines.append("- A duplicate (byte-identical to a photo imported before) is skipped. A near-duplicate (the "
                     "same photo re-saved, resized, cropped a little or made lighter or darker) is imported and "
                     "flagged, pointing at the earlier photo it repeats: Review lists a pair labeled differently.")
    if len(outcomes) > OUTCOME_ROWS:
        lines.append(f"- The table below lists the first {OUTCOME_ROWS:,} of {len(outcomes):,} files that were not "
                     "simply added.")
    if report.added:
        lines.append(_embedding_line(ctx))
    if report.added > PREVIEW_ITEMS:
        lines.append(f"Preview: the first {PREVIEW_ITEMS} of {report.added} added items "
                     "(original | 28x28 conversion).")
    gallery = preview_gallery(ctx.paths, report.added_ids[:PREVIEW_ITEMS])
    table = pd.DataFrame(outcomes[:OUTCOME_ROWS], columns=["file", "outcome"])
    return "\n".join(lines), table, gallery


def outcome_rows(ctx: UIContext, report: ImportReport, shown) -> list[tuple[str, str]]:
    """(file, what happened) for each file not simply added: near-duplicates first, then duplicates, rejections."""
    db = store.open_db(ctx.paths.db)
    rows = []
    for item_id, earlier in report.near_duplicate_of.items():
        name, earlier_name = store.get_item(db, item_id)["original_name"], store.get_item(db, earlier)["original_name"]
        rows.append((shown(name), f"imported as #{item_id} and flagged: near-duplicate of #{earlier} "
                                  f"({shown(earlier_name)})"))
    rows += [(shown(name), "skipped: byte-identical to a photo already imported") for name in report.duplicate_files]
    rows += [(shown(r.file), f"rejected: {r.reason}") for r in report.rejected]
    return rows


def _embedding_line(ctx: UIContext) -> str:
    """Start embedding the new photos where the backbone's weights are here; say what happened."""
    spec = get_spec(DEFAULT_BACKBONE)
    if not weights_path(spec).exists():
        return (f"- The photo model needs the {spec.name} ImageNet weights ({spec.weights_file} in "
                f"{weights_path(spec).parent}): press *Compute embeddings* in the Train tab to download them once.")
    job = jobs.embed_new_items(ctx.paths)
    if job is None:
        return "- The embedding job already running will include the new photos."
    return (f"- Computing the photo model's embeddings of the new photos in the background (job {job.id}); "
            "the header shows its progress.")


def build(ctx: UIContext) -> None:
    roots = " or ".join(f"`{root}`" for root in server_roots(ctx))
    gr.Markdown("Import product photos. For many photos, copy them to a folder on the server under "
                f"{roots} and type its path; small batches can be uploaded. Bad files are rejected one by "
                "one with a reason; the rest are converted to Fashion-MNIST form (28x28, light object on black).")
    summary = gr.Markdown(elem_id="al-import-summary")
    # the result boxes appear with a result: empty, they pushed the form down the page
    outcomes = gr.DataFrame(headers=["file", "outcome"], label="Files not simply added", interactive=False,
                            wrap=True, max_height=320, visible=False)
    with gr.Row():
        with gr.Column(scale=1):
            folder = gr.Textbox(label="Folder or archive on the server (bulk imports)",
                                placeholder=str(server_roots(ctx)[0] / "shoes"))
            label_from_folders = gr.Checkbox(label="Label from folder names",
                                             info="a folder per class, inside archives or server folders")
            holdout = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Holdout fraction",
                                info="share of new items kept aside to measure models in-domain (1 = a labeled test set)")
            url_lists = gr.Checkbox(label="Read .txt / .csv files as lists of image URLs",
                                    info="off: a text file is rejected, never read as URLs to download")
            run = gr.Button("Import", variant="primary")
        files = gr.File(label="…or upload photos or archives", file_count="multiple", scale=1, height=180)
    gallery = gr.Gallery(label="Conversion preview (original | 28x28)", columns=4, height="auto", visible=False)

    def on_import(files, folder, label_from_folders, holdout, url_lists, request: gr.Request,
                  progress=gr.Progress()):
        return import_files(ctx, files, folder, label_from_folders, holdout, request, progress, url_lists)

    def show_results(table: pd.DataFrame, previews: list | None):
        return gr.DataFrame(visible=len(table) > 0), gr.Gallery(visible=bool(previews))

    run.click(on_import, [files, folder, label_from_folders, holdout, url_lists], [summary, outcomes, gallery],
              api_name="import_files").success(
        show_results, [outcomes, gallery], [outcomes, gallery], api_visibility="private")
