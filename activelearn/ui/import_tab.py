"""Import tab (leads): upload photos or archives, or name a folder on the server.

The handler calls `ingest.import_paths`, the function behind `activelearn
import`, and shows its report plus a preview of what the model will see: each
added photo beside its 28x28 conversion, so a lead spots a bad crop or a
dark-background batch before anyone labels it. The summary (counts, then the
report's warnings) is the first output, so the result shows at the top.
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
from activelearn.errors import ActiveLearnError
from activelearn.ingest import import_paths
from activelearn.ui.context import UIContext

#: Pre-labels from folder names are recorded under this name, as the CLI does.
IMPORT_ANNOTATOR = "import"
PREVIEW_ITEMS = 12
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


def import_files(ctx: UIContext, files: list | None, folder: str, label_from_folders: bool,
                 holdout_fraction: float, request: gr.Request | None,
                 progress: gr.Progress | None = None) -> tuple[str, pd.DataFrame, list]:
    """Import uploads (source "upload", archives "archive") and/or a server path; lead only."""
    ctx.require(request, "import")
    uploads = _upload_paths(files)
    inputs = uploads + ([folder.strip()] if folder and folder.strip() else [])
    if not inputs:
        raise gr.Error("choose files to upload or type a folder path on the server", print_exception=False)

    def report_progress(done: int, total: int | None) -> None:
        if progress is not None:
            progress((done, total), desc="importing", unit="files")

    try:
        report = import_paths(inputs, paths=ctx.paths, label_from_folders=bool(label_from_folders),
                              holdout_fraction=float(holdout_fraction), annotator=IMPORT_ANNOTATOR,
                              progress=report_progress)
    except ActiveLearnError as exc:
        raise gr.Error(str(exc), print_exception=False) from exc

    def shown(name: str) -> str:
        """An upload's temporary folder means nothing to the user: show the file (or archive:member) name."""
        for upload in uploads:
            if name == upload or name.startswith(upload + ":"):
                return Path(upload).name + name[len(upload):]
        return name

    rejected = pd.DataFrame([(shown(r.file), r.reason) for r in report.rejected], columns=["file", "reason"])
    lines = [f"**Added {report.added}** · duplicates {report.duplicates} · near-duplicates "
             f"{report.near_duplicates} · pre-labeled from folders {report.labeled} · "
             f"rejected {len(report.rejected)}"]
    lines += [f"- warning: {w}" for w in report.warnings]
    if report.duplicates or report.near_duplicates:
        lines.append("- Duplicates (byte-identical to a photo imported before) were skipped; near-duplicates "
                     "were imported and flagged, each pointing at the earlier photo it resembles.")
    if report.added:
        lines.append(_embedding_line(ctx))
    if report.added > PREVIEW_ITEMS:
        lines.append(f"Preview: the first {PREVIEW_ITEMS} of {report.added} added items "
                     "(original | 28x28 conversion).")
    gallery = preview_gallery(ctx.paths, report.added_ids[:PREVIEW_ITEMS])
    return "\n".join(lines), rejected, gallery


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
    gr.Markdown("Import product photos: loose images or .zip / .tar.gz archives (uploaded), or a "
                "folder on the server. Bad files are rejected one by one with a reason; the rest "
                "are converted to Fashion-MNIST form (28x28, light object on black).")
    with gr.Row():
        files = gr.File(label="Photos or archives", file_count="multiple", scale=2)
        with gr.Column(scale=1):
            folder = gr.Textbox(label="…or a folder / archive path on the server",
                                placeholder="/data/scraped/shoes")
            label_from_folders = gr.Checkbox(label="Label from folder names",
                                             info="a folder per class, inside archives or server folders")
            holdout = gr.Slider(0.0, 1.0, value=0.1, step=0.01, label="Holdout fraction",
                                info="share of new items kept aside to measure models in-domain (1 = a labeled test set)")
            run = gr.Button("Import", variant="primary")
    summary = gr.Markdown()
    rejected = gr.DataFrame(headers=["file", "reason"], label="Rejected files", interactive=False,
                            wrap=True)
    gallery = gr.Gallery(label="Conversion preview (original | 28x28)", columns=4, height="auto")

    def on_import(files, folder, label_from_folders, holdout, request: gr.Request, progress=gr.Progress()):
        return import_files(ctx, files, folder, label_from_folders, holdout, request, progress)

    run.click(on_import, [files, folder, label_from_folders, holdout], [summary, rejected, gallery],
              api_name="import_files")
