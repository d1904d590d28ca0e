"""Pieces every tab shares, so each is drawn and worded one way: errors, job progress, item pictures.

* `user_error` is the one way a handler's problem reaches the page (a one-sentence
  gr.Error, no traceback); `user_errors()` turns the package's ActiveLearnError
  into it around a handler body.
* `job_progress` renders a training or embedding job (what it does, epoch and
  batch, time left, a <progress> bar) for the header, the Train tab and anyone
  else who shows a job.
* `annotators` lists who has decided anything, for annotator filters.
* `conversion_image`, `item_preview` and `thumbnail` draw an item: its 28x28
  conversion as the model sees it, the original beside it, or a small cached
  JPEG of the original for galleries of many items.
"""

from __future__ import annotations

import html
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageOps

from activelearn import jobs, store
from activelearn.config import Paths
from activelearn.convert import normalize_image, open_for_conversion
from activelearn.errors import ActiveLearnError
from activelearn.jobs import Job

THUMB_SIDE = 112
#: A failed job's message is cut to this many characters (the full text is a tooltip).
FAILURE_CHARS = 160
#: Gallery thumbnails: the longest edge, and where they are cached (by content hash, so never stale).
GALLERY_SIDE = 160
THUMBS_DIR = "thumbs"
#: Every ``gr.render`` in the app runs one at a time: a render registers its buttons' events in the
#: session's event table, and two renders doing that at once (the Label tab's and the team queue's
#: class buttons both redraw when a class is added) break Gradio with "dictionary changed size
#: during iteration", which leaves the page without its buttons.
ONE_RENDER_AT_A_TIME = {"concurrency_limit": 1, "concurrency_id": "activelearn-render"}


# ---------------------------------------------------------------- errors

def user_error(message: str) -> gr.Error:
    """What a handler raises for a problem the user can fix: the message alone, no traceback in the log."""
    return gr.Error(message, print_exception=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Around a handler body: the package's errors (bad class, missing version, ...) become user_error."""
    try:
        yield
    except ActiveLearnError as exc:
        raise user_error(str(exc)) from exc


# ---------------------------------------------------------------- choices

def annotators(db) -> list[str]:
    """Everyone who has recorded a decision, for annotator filters (folder pre-labels show as 'import')."""
    return sorted({annotator for annotator, _ in store.decision_times(db)})


# ---------------------------------------------------------------- job progress

_PHASES = {"queued": "starting", "load": "loading the data and the labels", "evaluate": "evaluating",
           "register": "saving the new version", "embed": "embedding photos"}


def job_activity(job: Job, *, seeding: bool = False) -> str:
    """What the job is for: 'training the seed model', 'embedding photos with mobilenet...'."""
    if job.kind == jobs.EMBED:
        return f"embedding photos with {job.params.get('backbone', 'the backbone')}"
    if seeding:
        return "training the seed model"
    trigger = ", automatic" if job.params.get("trigger") == "auto" else ""
    return f"training a new model ({job.params.get('mode', 'finetune')}{trigger})"


def job_step(job: Job) -> str:
    """Where the job is: 'epoch 2/5, batch 30/200' while training, else its phase in words."""
    if job.phase in ("train", "epoch-end") and job.epochs:
        text = f"epoch {max(job.epoch or 0, 1)}/{job.epochs}"
        if job.batch and job.batches:
            text += f", batch {job.batch}/{job.batches}"
        return text
    return _PHASES.get(job.phase or job.status, job.phase or job.status)


def job_progress(job: Job | None, *, seeding: bool = False) -> str:
    """One job as HTML: a running job's activity, step, time left and progress bar; else its outcome.

    The bar is `<progress class="al-job-progress" value="0..1">`, the same wherever it is shown.
    """
    if job is None:
        return ""
    if job.active:
        detail = job_step(job) + (f", about {job.eta_s:.0f} s left" if job.eta_s else "")
        return (f"<span class='al-job' data-job='{job.id}'>{html.escape(job_activity(job, seeding=seeding))} "
                f"(job {job.id}): {html.escape(detail)} "
                f"<progress class='al-job-progress' max='1' value='{job.fraction_done:.4f}'></progress> "
                f"<span class='al-job-percent'>{job.fraction_done:.0%}</span></span>")
    message = job.message or ""
    if job.status == "failed":
        # the seed's failure is what to fix before anything works (e.g. where to put Fashion-MNIST): whole
        short = message if seeding or len(message) <= FAILURE_CHARS else message[:FAILURE_CHARS] + "… (hover for all)"
        return (f"<span class='al-job al-warn' data-job='{job.id}' title='{html.escape(message, quote=True)}'>"
                f"job {job.id} failed: {html.escape(short)}</span>")
    return (f"<span class='al-job' data-job='{job.id}'>last job {job.id}: {html.escape(job.status)} "
            f"{html.escape(job.version or '')}</span>")


# ---------------------------------------------------------------- item pictures

def conversion_image(pixels: bytes | np.ndarray, side: int = THUMB_SIDE) -> Image.Image:
    """A 28x28 image (blob or array) scaled up without smoothing, as the model sees it."""
    array = np.frombuffer(pixels, np.uint8).reshape(28, 28) if isinstance(pixels, bytes) else pixels
    return Image.fromarray(np.ascontiguousarray(array, np.uint8), mode="L").resize((side, side), Image.NEAREST)


def _original(paths: Paths, item: dict, side: int) -> Image.Image | None:
    """The stored original fitted in side x side, or None when there is none or it cannot be read."""
    if not item.get("stored_path"):
        return None
    try:
        with open_for_conversion(paths.home / item["stored_path"], work_side=2 * side) as opened:
            return ImageOps.contain(normalize_image(opened), (side, side))
    except (OSError, ValueError):  # original copy gone or unreadable
        return None


def item_preview(paths: Paths, item: dict) -> Image.Image:
    """The original photo (fitted on white) beside its 28x28 conversion scaled up 4x."""
    canvas = Image.new("RGB", (2 * THUMB_SIDE + 8, THUMB_SIDE), "white")
    original = _original(paths, item, THUMB_SIDE)
    if original is None:
        canvas.paste((200, 200, 200), (0, 0, THUMB_SIDE, THUMB_SIDE))
    else:
        canvas.paste(original, ((THUMB_SIDE - original.width) // 2, (THUMB_SIDE - original.height) // 2))
    canvas.paste(conversion_image(item["pixels"]).convert("RGB"), (THUMB_SIDE + 8, 0))
    return canvas


def thumbnail(paths: Paths, item: dict, side: int = GALLERY_SIDE) -> str:
    """Path of a small JPEG of the item for galleries, made once and cached under data/cache/thumbs.

    A page of 48 full-size originals would send megabytes to the browser and decode each
    on every page turn; the cache is keyed by the content hash, so it never goes stale.
    Items without an original show their 28x28 conversion (`item` needs id, sha256 and
    stored_path, as store.browse_items gives them; pixels are read when needed).
    """
    target = paths.cache / THUMBS_DIR / f"{item['sha256']}-{side}.jpg"
    if target.exists():
        return str(target)
    picture = _original(paths, item, side)
    if picture is None:
        pixels = item.get("pixels")
        if pixels is None:
            pixels = store.item_pixels(store.open_db(paths.db), [item["id"]])[0]
        picture = conversion_image(pixels, side).convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.jpg")
    picture.save(partial, "JPEG", quality=85)
    os.replace(partial, target)   # two pages asking at once both end with a whole file
    return str(target)


def model_view(paths: Paths, item: dict, zoom: int = 8) -> str:
    """Path of the item's 28x28 conversion enlarged ``zoom`` times by pixel repetition (what the model
    sees), a PNG made once and cached beside the thumbnails by content hash.

    Handing Gradio an array instead costs a PNG encode, a hash and a cache copy on every answer.
    """
    target = paths.cache / THUMBS_DIR / f"{item['sha256']}-model-x{zoom}.png"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.png")
        conversion_image(item["pixels"], 28 * zoom).save(partial, "PNG")
        os.replace(partial, target)
    return str(target)


def thumbs_dir(paths: Paths) -> Path:
    """The folder `thumbnail` writes to; the server must be allowed to serve it."""
    return paths.cache / THUMBS_DIR
