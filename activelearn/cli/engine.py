"""Active-learning commands: embed, score, query, retrain, jobs, cancel, explain."""

from __future__ import annotations

import argparse
import json
import os
import sys

from activelearn import store
from activelearn.backbones import BACKBONES, DEFAULT_BACKBONE
from activelearn.config import Paths
from activelearn.query import STRATEGIES
from activelearn.retrain import FINETUNE, PHOTO, SCRATCH, TRAINING_DEFAULTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score all items with the active model (cached per version)",
                       description="Run the active model over items not yet scored by it.")
    p.set_defaults(func=score)

    p = sub.add_parser("query", help="the items the model most wants labeled next",
                       description="Rank the unlabeled pool (never decided items) by the strategy; a random 10% "
                                   "share comes from the unlabeled holdout until each class has 30 "
                                   "labeled holdout items, so in-domain metrics have something to stand on.")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="margin")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--audit-fraction", type=float, default=0.1,
                   help="share of the batch drawn at random and marked audit (default 0.1)")
    p.add_argument("--class", dest="class_filter", help="only items predicted as this class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lease", action="store_true",
                   help="lease the listed items to --annotator for 5 minutes, as the Label tab does, so no "
                        "one else is served them (a CLI labeler: query --lease, then label each item)")
    p.add_argument("--annotator", default=os.environ.get("USER") or "cli",
                   help="who the items are for (default: $USER or 'cli'); without --lease their own "
                        "leases do not hide items")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=query)

    p = sub.add_parser("embed", help="compute backbone embeddings of new items in a background process",
                       description="Embed every item the backbone has not embedded yet (the photo model's "
                                   "input), from the stored original photos.")
    p.add_argument("--backbone", choices=sorted(BACKBONES), default=DEFAULT_BACKBONE)
    p.add_argument("--wait", action="store_true", help="show progress and wait for the job to end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=embed)

    p = sub.add_parser("retrain", help="train a new version in a background process",
                       description="Start a training job: --kind photo trains a head on ImageNet-backbone "
                                   "embeddings of the photos (seconds); --kind cnn fine-tunes the active CNN "
                                   "or trains one from scratch on Fashion-MNIST + human labels (minutes). "
                                   "The new version is activated unless it is worse than the active one "
                                   "on the selection part of the labeled holdout.")
    p.add_argument("--kind", choices=("cnn", "photo"), default="cnn")
    p.add_argument("--mode", choices=(FINETUNE, SCRATCH), default=FINETUNE, help="CNN only")
    p.add_argument("--backbone", choices=sorted(BACKBONES), help=f"photo only (default {DEFAULT_BACKBONE})")
    p.add_argument("--epochs", type=int, help="CNN only")
    p.add_argument("--human-weight", type=float, help="CNN only: sample weight of a human label (default 5)")
    p.add_argument("--fmnist-fraction", type=float,
                   help=f"CNN only: share of the Fashion-MNIST training images used (default "
                        f"{TRAINING_DEFAULTS[FINETUNE]['fmnist_fraction']} fine-tune, "
                        f"{TRAINING_DEFAULTS[SCRATCH]['fmnist_fraction']:g} scratch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force-activate", action="store_true", help="activate even if worse on the holdout")
    p.add_argument("--wait", action="store_true", help="show progress and wait for the job to end")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=retrain)

    p = sub.add_parser("jobs", help="list training jobs and their progress",
                       description="Recent jobs, newest first; dead workers are marked failed.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=jobs)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job_id", type=int)
    p.set_defaults(func=cancel)

    p = sub.add_parser("explain", help="Grad-CAM heatmap of the active model's prediction for an item",
                       description="Overlay a Grad-CAM heatmap for the predicted (or given) class on the "
                                   "item's photo (photo model: the backbone's last conv block; CNN: its last "
                                   "conv on the 28x28 image) and save it as PNG.")
    p.add_argument("item", type=int)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--version", help="default: the active version")
    p.add_argument("--class", dest="class_name", help="explain this class instead of the predicted one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=explain)


def score(args: argparse.Namespace, paths: Paths) -> int:
    from tqdm import tqdm

    from activelearn.scoring import score_items
    bar = tqdm(desc="score", unit="item", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)
    scores = score_items(paths, progress=progress)
    bar.close()
    print(f"{len(scores.item_ids)} items scored by {scores.version}")
    return 0


def query(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.labeling import next_items
    class_filter = None
    if args.class_filter:
        class_filter = store.resolve_class(store.open_db(paths.db), args.class_filter).id
    entries = next_items(paths, annotator=args.annotator, n=args.n, strategy=args.strategy,
                         class_filter=class_filter, audit_fraction=args.audit_fraction,
                         seed=args.seed, take_lease=args.lease)
    if args.json:
        print(json.dumps([e.as_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("the queue is empty: import photos or relax the filters")
    for e in entries:
        top = ", ".join(f"{name} {p:.2f}" for name, p in e.top3) or "no model yet"
        print(f"item {e.item_id:>6}  {e.strategy:<16} score {e.score:.3f}  {top}")
    return 0


def _job_line(job) -> str:
    bits = [f"job {job.id}", job.status]
    if job.epochs:
        bits.append(f"epoch {job.epoch}/{job.epochs}")
    if job.accuracy is not None:
        bits.append(f"acc {job.accuracy:.4f}")
    if job.version:
        bits.append(job.version)
    if job.message:
        bits.append(job.message)
    return "  ".join(bits)


def retrain(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import jobs as joblib
    if args.kind == "photo":
        params = {"mode": PHOTO, "backbone": args.backbone}
    else:
        params = {"mode": args.mode, "epochs": args.epochs, "human_weight": args.human_weight,
                  "fmnist_fraction": args.fmnist_fraction}
    params |= {"seed": args.seed, "force_activate": args.force_activate}
    params = {k: v for k, v in params.items() if v is not None}
    return _run_job(args, paths, joblib.start_training(paths, params))


def embed(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import jobs as joblib
    return _run_job(args, paths, joblib.start_job(paths, joblib.EMBED, {"backbone": args.backbone}))


def _run_job(args: argparse.Namespace, paths: Paths, job) -> int:
    """Print the started job, or follow it with a tqdm bar until it ends (--wait)."""
    from activelearn import jobs as joblib
    if not args.wait:
        print(json.dumps(job.as_dict()) if args.json else f"started job {job.id} (pid {job.pid}); "
              f"follow it with `python -m activelearn jobs`")
        return 0
    from tqdm import tqdm
    bar = tqdm(total=100, desc=f"job {job.id}", unit="%", file=sys.stderr)

    def update(j) -> None:
        bar.n = round(100 * j.fraction_done)
        bar.set_postfix_str(f"{j.phase or ''} {j.epoch or 0}/{j.epochs or '?'}"
                            + (f" acc {j.accuracy:.3f}" if j.accuracy is not None else ""))
        bar.refresh()
    db = store.open_db(paths.db)
    try:
        job = joblib.wait(db, job.id, on_update=update)
    finally:
        bar.close()
    print(json.dumps(job.as_dict()) if args.json else _job_line(job))
    return 0 if job.status == "succeeded" else 1


def jobs(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import jobs as joblib
    listed = joblib.list_jobs(store.open_db(paths.db))
    if args.json:
        print(json.dumps([j.as_dict() for j in listed], indent=2))
        return 0
    if not listed:
        print("no jobs yet")
    for job in listed:
        print(_job_line(job))
    return 0


def cancel(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import jobs as joblib
    job = joblib.cancel(store.open_db(paths.db), args.job_id)
    print(f"job {job.id}: cancel requested")
    return 0


def explain(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.explain import explain_item
    class_id = None
    if args.class_name:
        class_id = store.resolve_class(store.open_db(paths.db), args.class_name).id
    result = explain_item(paths, args.item, version=args.version, class_id=class_id)
    result.overlay.save(args.out)
    summary = {"item": args.item, "version": result.version, "kind": result.kind, "class": result.class_name,
               "probability": result.probability, "layer": result.layer, "seconds": round(result.seconds, 3),
               "out": args.out}
    print(json.dumps(summary) if args.json else
          f"item {args.item}: {result.class_name} ({result.probability:.0%}) by {result.version} "
          f"[{result.kind}, {result.layer}], Grad-CAM in {result.seconds * 1000:.0f} ms -> {args.out}")
    return 0
