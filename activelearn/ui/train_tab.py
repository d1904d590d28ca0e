"""Train tab: start / follow / cancel training, embed photos, auto-retrain, versions, activate or roll back.

Training and embedding run in their own processes (`jobs.start_job`), so the
handlers only insert or read a job row and return at once: the page stays
usable for every annotator while a lead's job runs. A 1-second timer reads the
job rows and redraws only when they changed, so an idle page costs one SQLite
read a second. The mode's defaults come from `retrain.TRAINING_DEFAULTS`, the
table the CLI reads too.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from activelearn import autotrain, jobs, labeling, registry, reports, store
from activelearn.backbones import BACKBONES, DEFAULT_BACKBONE
from activelearn.errors import ActiveLearnError
from activelearn.jobs import Job
from activelearn.retrain import FINETUNE, PHOTO, SCRATCH, TRAINING_DEFAULTS
from activelearn.ui.components import job_progress, user_error, user_errors
from activelearn.ui.context import UIContext

POLL_S = 1.0
VERSION_COLUMNS = ["version", "active", "kind", "parent", "created", "mode", "Fashion-MNIST acc",
                   "holdout acc", "holdout n", "human labels", "classes", "activation"]
#: Shares of the table's width: every header fits on one line; the activation reason (a sentence) wraps.
VERSION_WIDTHS = ["7%", "6%", "10%", "6.5%", "9%", "7%", "7.5%", "7%", "7%", "7%", "7%", "19%"]
#: The learning history's y axis starts at most this far below the lowest accuracy, on a 0.1 grid, and ends at 1.
ACCURACY_MARGIN = 0.05
MODE_CHOICES = [("Photo model: ImageNet backbone + head (seconds)", PHOTO),
                ("Fine-tune the active CNN (minutes)", FINETUNE), ("CNN from scratch (long)", SCRATCH)]


def _eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def job_summary(job: Job | None) -> str:
    """One Markdown block: status, phase, epoch x/y, batch, loss, accuracy, ETA, final message."""
    if job is None:
        return "No training job yet."
    what = f"backbone {job.params.get('backbone', DEFAULT_BACKBONE)}" if job.kind == jobs.EMBED else (
        f"mode {job.params.get('mode', FINETUNE)}" + (" (automatic)" if job.params.get("trigger") == "auto" else ""))
    lines = [f"**Job {job.id} ({job.kind}): {job.status}** · phase {job.phase or '—'} · {what}"]
    if job.epochs:
        parts = [f"epoch {job.epoch or 0}/{job.epochs}"]
        if job.batches:
            parts.append(f"batch {job.batch or 0}/{job.batches}")
        if job.loss is not None:
            parts.append(f"loss {job.loss:.4f}")
        if job.accuracy is not None:
            parts.append(f"accuracy {job.accuracy:.3f}")
        if job.active:
            parts.append(f"ETA {_eta(job.eta_s)}")
        lines.append(" · ".join(parts))
    if job.message:
        lines.append(job.message)
    return "\n\n".join(lines)


def curves_figure(job: Job | None) -> Figure | None:
    """Loss and accuracy per finished epoch, plus the running values of the epoch in progress."""
    if job is None or not (job.history or job.loss is not None):
        return None
    figure = Figure(figsize=(8, 3), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    done = [h.get("epoch", i + 1) for i, h in enumerate(job.history)]
    for axes, key in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.plot(done, [h.get(key) for h in job.history], "o-", label=f"train {key}")
        val = [h.get(f"val_{key}") for h in job.history]
        if any(v is not None for v in val):
            axes.plot(done, val, "s--", label=f"validation {key}")
        current = getattr(job, key)
        if job.active and job.phase == "train" and current is not None and job.epoch and job.batches:
            axes.plot([job.epoch - 1 + (job.batch or 0) / job.batches], [current], "*", markersize=12,
                      label="current epoch (running)")
        axes.set_xlim(0, (job.epochs or len(job.history)) + 0.25)  # the whole run, filled in as it goes
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_title(key)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    return figure


def _latest_job(db) -> Job | None:
    latest = jobs.list_jobs(db, limit=1)
    return jobs.active_job(db) or (latest[0] if latest else None)


def versions_table(ctx: UIContext) -> pd.DataFrame:
    """registry.version_summaries with the activation decision and reason from each card."""
    rows = []
    for row in registry.version_summaries(ctx.paths.models):
        if "error" in row:
            rows.append({"version": row["version"], "active": row["active"], "activation": row["error"]})
            continue
        decision = registry.read_card(ctx.paths.models, row["version"]).get("activation") or {}
        verdict = ("activated" if decision.get("activated") else "kept inactive") if decision else ""
        holdout = row["holdout_accuracy"]
        rows.append({
            "version": row["version"], "active": "✔" if row["active"] else "",
            "kind": row["kind"] + (f" ({row['backbone']})" if row["backbone"] else ""),
            "parent": row["parent"] or "", "created": (row["created_at"] or "")[:19].replace("T", " "),
            "mode": row["mode"] or "",
            "Fashion-MNIST acc": None if row["fmnist_accuracy"] is None else round(row["fmnist_accuracy"], 4),
            "holdout acc": None if holdout is None else round(holdout, 4), "holdout n": row["holdout_n"],
            "human labels": row["human_labels"], "classes": row["classes"],
            "activation": f"{verdict}: {decision['reason']}" if decision.get("reason") else verdict,
        })
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def _version_choices(ctx: UIContext) -> gr.Dropdown:
    versions = registry.list_versions(ctx.paths.models)
    return gr.Dropdown(choices=versions, value=registry.active_version(ctx.paths.models))


def mode_defaults(mode: str) -> tuple[gr.Number, gr.Slider, gr.Dropdown]:
    """Epochs, Fashion-MNIST share and backbone widgets for a mode: its defaults, shown only where they apply."""
    defaults = TRAINING_DEFAULTS[mode]
    cnn = mode != PHOTO
    return (gr.Number(value=defaults.get("epochs"), visible=cnn),
            gr.Slider(value=defaults.get("fmnist_fraction"), visible=cnn),
            gr.Dropdown(value=defaults.get("backbone", DEFAULT_BACKBONE), visible=not cnn))


def start_training(ctx: UIContext, mode: str, epochs: float | None, fmnist_fraction: float | None,
                   force_activate: bool, request: gr.Request | None, backbone: str | None = None) -> str:
    """Queue a training job and return at once; the job runs in its own process. Lead only."""
    ctx.require(request, "train")
    if mode == PHOTO:
        params: dict[str, Any] = {"mode": PHOTO, "backbone": backbone or DEFAULT_BACKBONE}
    else:
        params = {"mode": mode, "epochs": int(epochs or TRAINING_DEFAULTS[mode]["epochs"]),
                  "fmnist_fraction": float(fmnist_fraction or TRAINING_DEFAULTS[mode]["fmnist_fraction"])}
    if force_activate:
        params["force_activate"] = True
    with user_errors():
        job = jobs.start_training(ctx.paths, params)
    return job_summary(job)


def start_embedding(ctx: UIContext, backbone: str | None, request: gr.Request | None) -> str:
    """Embed every item the backbone has not embedded yet, in a job process. Lead only."""
    ctx.require(request, "train")
    with user_errors():
        job = jobs.start_job(ctx.paths, jobs.EMBED, {"backbone": backbone or DEFAULT_BACKBONE})
    return job_summary(job)


def embedding_status(ctx: UIContext) -> str:
    """How many items each backbone has embedded, and the embedding job in progress."""
    db = store.open_db(ctx.paths.db)
    total = sum(store.status(db).items_per_split.values())
    counts = store.embedded_backbones(db)
    lines = [f"Embedded: {counts.get(name, 0):,} of {total:,} items ({name})"
             for name in dict.fromkeys([DEFAULT_BACKBONE, *counts])]
    running = jobs.active_job(db, jobs.EMBED)
    if running is not None:
        lines.append(job_progress(running))
    return "\n\n".join(lines)


def set_auto_retrain(ctx: UIContext, enabled: bool, every: float, request: gr.Request | None) -> str:
    """Switch automatic photo-model retraining on or off, every N decisions. Lead only."""
    ctx.require(request, "train")
    with user_errors():
        chosen = autotrain.configure(store.open_db(ctx.paths.db), enabled=enabled, every=int(every or 0))
    return auto_retrain_note(ctx, chosen)


def auto_retrain_note(ctx: UIContext, chosen: dict[str, Any] | None = None) -> str:
    db = store.open_db(ctx.paths.db)
    chosen = chosen or autotrain.settings(db)
    if not chosen["enabled"]:
        return "Automatic retraining is off."
    new, _ = autotrain.labels_since_photo_model(ctx.paths, db)
    return (f"Automatic retraining is on: a photo model trains after every {chosen['every']} new labels "
            f"({new} since the newest photo model).")


def set_overlap(ctx: UIContext, share_percent: float, k: float, request: gr.Request | None) -> str:
    """Send a share of labeled items to k annotators each (0% turns it off). Lead only."""
    ctx.require(request, "train")
    with user_errors():
        labeling.set_overlap(store.open_db(ctx.paths.db), float(share_percent or 0) / 100, int(k or 0))
    return overlap_note(ctx)


def overlap_note(ctx: UIContext) -> str:
    db = store.open_db(ctx.paths.db)
    overlap = labeling.overlap_setting(db)
    if not overlap.on:
        return "Overlap is off: every item is labeled by one person, so agreement cannot be measured."
    multi = sum(n >= 2 for n in store.votes_per_item(db).values())
    return (f"Overlap is on: {overlap.share:.0%} of labeled items, drawn at random, go to {overlap.k} different "
            f"annotators each ({multi} item(s) have votes from two or more people so far; see Review > Team).")


def cancel_training(ctx: UIContext, request: gr.Request | None) -> str:
    """Ask the running job to stop; the worker stops within about a second. Lead only."""
    ctx.require(request, "train")
    db = store.open_db(ctx.paths.db)
    job = jobs.active_job(db)
    if job is None:
        raise user_error("no training job is running")
    with user_errors():
        return job_summary(jobs.cancel(db, job.id))


def job_status(ctx: UIContext, seen: list | None = None) -> tuple:
    """The timer's poll: (seen key, summary, progress bar, curves, versions, version choices, history).

    `seen` is the key of what the page shows; when the job row has not changed every
    display output is skipped. When a job ends, the versions table is refreshed and a
    notice carries the job's verdict (activated or kept inactive, and why).
    """
    job = _latest_job(store.open_db(ctx.paths.db))
    key = [] if job is None else [job.id, job.status, job.phase, job.epoch, job.batch]
    if seen is not None and key == seen:
        return (seen, *[gr.skip()] * 6)
    just_ended = (job is not None and not job.active and bool(seen) and seen[0] == job.id
                  and seen[1] in jobs.ACTIVE_STATES)
    if just_ended:
        (gr.Info if job.status == "succeeded" else gr.Warning)(f"Job {job.id} {job.status}: {job.message}")
    versions = refresh_versions(ctx) if seen is None or just_ended else (gr.skip(),) * 3
    return (key, job_summary(job), job_progress(job), curves_figure(job), *versions)


def activate_version(ctx: UIContext, version: str | None, request: gr.Request | None) -> tuple:
    """Point ACTIVE at a version (roll back or forward) after checking it loads. Lead only."""
    ctx.require(request, "activate")
    if not version:
        raise user_error("choose a version to activate")
    with user_errors():
        registry.activate(ctx.paths.models, version)
    return (f"{version} is now the active model.", *refresh_versions(ctx))


def learning_history(ctx: UIContext) -> Figure | None:
    """Accuracy of every version on both test sets (the CLI report's history.png)."""
    versions = registry.list_versions(ctx.paths.models)
    cards = []
    for version in versions:
        try:
            cards.append(registry.read_card(ctx.paths.models, version))
        except ActiveLearnError:  # a broken version is listed in the table with its error
            continue
    if not cards:
        return None
    figure = reports.history_figure(cards)
    for axes in figure.axes:
        accuracy_scale(axes)
    return figure


def accuracy_scale(axes) -> None:
    """Accuracy from a round number below the data up to 1: a one-point change does not fill the plot as a cliff."""
    values = [y for line in axes.get_lines() for y in line.get_ydata() if math.isfinite(y)]
    if values:
        axes.set_ylim(max(0.0, math.floor((min(values) - ACCURACY_MARGIN) * 10) / 10), 1.0)


def refresh_versions(ctx: UIContext) -> tuple[pd.DataFrame, gr.Dropdown, Figure | None]:
    return versions_table(ctx), _version_choices(ctx), learning_history(ctx)


def build(ctx: UIContext) -> None:
    gr.Markdown("Train a new version in the background: keep labeling meanwhile. The **photo model** learns "
                "from the human labels over ImageNet-backbone embeddings of the photos in seconds; the CNN "
                "works on the 28x28 conversions. A new version becomes active unless it is worse than the "
                "active one on the selection part of the labeled in-domain holdout (unless forced).")
    auto_settings = autotrain.settings(store.open_db(ctx.paths.db))
    with gr.Row():
        mode = gr.Radio(MODE_CHOICES, value=PHOTO, label="Mode")
        backbone = gr.Dropdown(sorted(BACKBONES), value=DEFAULT_BACKBONE, label="Backbone")
        epochs = gr.Number(value=TRAINING_DEFAULTS[FINETUNE]["epochs"], minimum=1, maximum=100, precision=0,
                           label="Epochs", visible=False)
        fraction = gr.Slider(0.01, 1.0, value=TRAINING_DEFAULTS[FINETUNE]["fmnist_fraction"], step=0.01,
                             label="Share of Fashion-MNIST per epoch", visible=False)
        force = gr.Checkbox(label="Activate even if not better")
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        cancel = gr.Button("Cancel training", variant="stop")
    summary = gr.Markdown()
    bar = gr.HTML()
    curves = gr.Plot(label="Training curves", visible=False)
    seen = gr.State(None)
    timer = gr.Timer(POLL_S)

    with gr.Accordion("Photo embeddings and automatic retraining", open=True):
        with gr.Row():
            embed = gr.Button("Compute embeddings of new photos")
            auto = gr.Checkbox(value=auto_settings["enabled"], label="Retrain the photo model automatically")
            every = gr.Number(value=auto_settings["every"], minimum=1, precision=0, label="every N new labels")
            save_auto = gr.Button("Save")
        embed_note = gr.Markdown()
        auto_note = gr.Markdown()

    overlap = labeling.overlap_setting(store.open_db(ctx.paths.db))
    with gr.Accordion("Team overlap: items labeled by several annotators", open=False):
        with gr.Row():
            share = gr.Slider(0, 50, value=round(overlap.share * 100) if overlap.on else 10, step=1,
                              label="Share of labeled items (%); 0 turns overlap off")
            k = gr.Number(value=overlap.k, minimum=2, maximum=10, precision=0, label="Annotators per item")
            save_overlap = gr.Button("Save")
        overlap_md = gr.Markdown(overlap_note(ctx))

    gr.Markdown("### Model versions")
    table = gr.DataFrame(headers=VERSION_COLUMNS, interactive=False, wrap=True, column_widths=VERSION_WIDTHS,
                         elem_id="al-versions")
    with gr.Row():
        # custom values: an API caller may name a version made since the page loaded (activate checks it)
        chosen = gr.Dropdown(label="Version", choices=registry.list_versions(ctx.paths.models),
                             allow_custom_value=True, interactive=True)
        activate = gr.Button("Activate (roll back / forward)")
        refresh = gr.Button("Refresh")
    activation_note = gr.Markdown()
    history = gr.Plot(label="Learning history: accuracy of every version")

    def on_start(mode, epochs, fraction, force, backbone, request: gr.Request):
        return start_training(ctx, mode, epochs, fraction, force, request, backbone)

    def on_cancel(request: gr.Request):
        return cancel_training(ctx, request)

    def on_activate(version, request: gr.Request):
        return activate_version(ctx, version, request)

    def on_embed(backbone, request: gr.Request):
        return start_embedding(ctx, backbone, request)

    def on_auto(enabled, every, request: gr.Request):
        return set_auto_retrain(ctx, enabled, every, request)

    def on_overlap(percent, annotators, request: gr.Request):
        return set_overlap(ctx, percent, annotators, request)

    def on_select(data: pd.DataFrame, event: gr.SelectData):
        return gr.Dropdown(value=data.iloc[event.index[0]]["version"])

    def on_tick(seen_key):
        key, summary_text, bar_html, figure, *versions = job_status(ctx, seen_key)
        if figure != gr.skip():  # the curves' box shows once there is something to draw
            figure = gr.Plot(value=figure, visible=figure is not None)
        return (key, summary_text, bar_html, figure, *versions, embedding_status(ctx), auto_retrain_note(ctx))

    mode.change(mode_defaults, mode, [epochs, fraction, backbone], api_name="mode_defaults")
    start.click(on_start, [mode, epochs, fraction, force, backbone], summary, api_name="start_training")
    cancel.click(on_cancel, None, summary, api_name="cancel_training")
    embed.click(on_embed, backbone, embed_note, api_name="start_embedding")
    save_auto.click(on_auto, [auto, every], auto_note, api_name="set_auto_retrain")
    save_overlap.click(on_overlap, [share, k], overlap_md, api_name="set_overlap")
    timer.tick(on_tick, seen, [seen, summary, bar, curves, table, chosen, history, embed_note, auto_note],
               api_name="job_status", concurrency_limit=None)
    refresh.click(lambda: refresh_versions(ctx), None, [table, chosen, history], api_name="versions")
    activate.click(on_activate, chosen, [activation_note, table, chosen, history], api_name="activate_version")
    table.select(on_select, table, chosen, api_visibility="private")
