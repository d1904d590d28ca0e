"""Model commands: train-seed, evaluate, models, activate, compare."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from activelearn import registry
from activelearn.config import Paths
from activelearn.retrain import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-seed", help="train, evaluate, register and activate the seed model",
                       description="Train the seed CNN on the 60k Fashion-MNIST training images (the "
                                   "last epoch is kept) plus any human labels, evaluate on the 10k test "
                                   "images, register and activate it (the same path as `retrain --mode "
                                   "scratch`, in this process). Prints the new version.")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--json", action="store_true", help="print the card's metrics as JSON")
    p.set_defaults(func=train_seed)

    p = sub.add_parser("evaluate", help="print a version's metrics",
                       description="A version's kind and metrics: the labeled in-domain holdout (report and "
                                   "selection parts, computed now) and Fashion-MNIST test (CNN versions).")
    p.add_argument("--version", help="default: the active version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("models", help="list model versions", description="List versions with accuracy.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=list_models)

    p = sub.add_parser("activate", help="make a version the active one (roll back or forward)",
                       description="Point the active model at VERSION after checking that it loads.")
    p.add_argument("version")
    p.set_defaults(func=activate)

    p = sub.add_parser("compare", help="per-class deltas between two versions",
                       description="Per-class accuracy/precision/recall/F1 deltas (V2 - V1).")
    p.add_argument("v1")
    p.add_argument("v2")
    p.add_argument("--split", choices=("holdout", "holdout_selection", "fmnist_test"), default="holdout",
                   help="holdout = its report part (never used to pick a version), computed now for both "
                        "versions on the same items; holdout_selection = the part activation looks at")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=compare)


class TqdmProgress:
    """Training progress as a tqdm bar over all batches of all epochs (on stderr)."""

    def __init__(self, description: str):
        from tqdm import tqdm
        self.bar = tqdm(total=0, desc=description, unit="batch", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, update: dict[str, Any]) -> bool:
        if update.get("batches") and update.get("epochs"):
            self.bar.total = update["batches"] * update["epochs"]
            self.bar.n = (update["epoch"] - 1) * update["batches"] + update["batch"]
            post = {k: f"{update[k]:.4f}" for k in ("loss", "accuracy", "val_accuracy") if update.get(k)}
            self.bar.set_postfix(epoch=f"{update['epoch']}/{update['epochs']}", **post, refresh=False)
            self.bar.refresh()
        elif update.get("phase"):
            self.bar.set_description(update["phase"])
        return False

    def close(self) -> None:
        self.bar.close()


def train_seed(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.retrain import SCRATCH, retrain_and_register

    params = {"mode": SCRATCH, "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
              "force_activate": True}
    progress = TqdmProgress("train-seed")
    try:
        outcome = retrain_and_register(paths, params, progress=progress)
    finally:
        progress.close()
    card = registry.read_card(paths.models, outcome.version)
    metrics = card["metrics"]["fmnist_test"]
    if args.json:
        print(json.dumps({"version": outcome.version, "fmnist_test": metrics, "wall_time_s": card["wall_time_s"],
                          "cpu_time_s": card.get("cpu_time_s")}))
    else:
        print(f"{outcome.version}: Fashion-MNIST test accuracy {metrics['accuracy']:.4f} "
              f"({card['epochs_run']} epochs, {card['wall_time_s']:.0f} s); active")
    return 0


def evaluate(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.holdout import report
    out = report(paths, args.version or registry.require_active(paths.models))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    kind = out["kind"] + (f" ({out['backbone']})" if out["backbone"] else "")
    print(f"{out['version']}: {kind} model{', active' if out['active'] else ''}")
    for split in ("holdout", "holdout_selection", "fmnist_test"):
        metrics = out[split]
        if not metrics["n"]:
            print(f"{split}: no items" + (" (a photo model has no Fashion-MNIST test score)"
                                          if split == "fmnist_test" and out["kind"] == "photo" else ""))
            continue
        print(f"{split}: accuracy {metrics['accuracy']:.4f} on {metrics['n']} items")
        print(f"  {'class':<14}{'prec':>7}{'recall':>8}{'f1':>7}{'support':>9}")
        for name, m in metrics["per_class"].items():
            if m["support"]:
                print(f"  {name:<14}{m['precision']:>7.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9}")
    return 0


def list_models(args: argparse.Namespace, paths: Paths) -> int:
    """Versions with their holdout accuracy computed now, so every version is measured on the same items."""
    from activelearn import holdout
    rows = registry.version_summaries(paths.models)
    for row in rows:
        if "error" not in row:
            now = holdout.metrics(paths, row["version"], "holdout")
            row["holdout_accuracy"], row["holdout_n"] = now["accuracy"], now["n"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no model versions yet: run `python -m activelearn train-seed`")
    for r in rows:
        if "error" in r:
            print(f"  {r['version']:<6} ERROR {r['error']}")
            continue
        hold = f"{r['holdout_accuracy']:.4f} (n={r['holdout_n']})" if r["holdout_accuracy"] is not None else "-"
        fmnist = f"{r['fmnist_accuracy']:.4f}" if r["fmnist_accuracy"] is not None else "     -"
        print(f"{'*' if r['active'] else ' '} {r['version']:<6} {r['kind']:<5} fmnist {fmnist}  "
              f"holdout {hold}  human labels {r['human_labels']}  parent {r['parent'] or '-'}")
    return 0


def activate(args: argparse.Namespace, paths: Paths) -> int:
    registry.activate(paths.models, args.version)
    print(f"{args.version} is now active")
    return 0


def compare(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn.evaluate import compare_metrics
    from activelearn.holdout import metrics
    a, b = metrics(paths, args.v1, args.split), metrics(paths, args.v2, args.split)
    result = {"v1": args.v1, "v2": args.v2, "split": args.split, **compare_metrics(a, b)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def fmt(v):
        return "     -" if v is None else f"{v:+.3f}"
    print(f"{args.split}: accuracy {fmt(result['accuracy'])} ({args.v2} - {args.v1})")
    for name, d in result["per_class"].items():
        print(f"  {name:<14} accuracy {fmt(d['accuracy'])}  f1 {fmt(d['f1'])}  "
              f"support {d['support_old']}->{d['support_new']}")
    return 0
