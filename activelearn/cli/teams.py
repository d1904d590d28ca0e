"""Team commands: `agreement` (kappa, alpha, trend) and `consensus` (CROWDLAB labels, annotator quality).

Both read each annotator's latest vote per item from labels.db (folder pre-labels of
`import` are no one's vote and are left out). `agreement` needs no model; `consensus`
weighs the votes with the active model's cached probabilities (scoring only items the
cache lacks, which is when TensorFlow is imported). The figures come from activelearn.teams,
as the Review tab's Team section's do; this module parses and prints.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import pandas as pd

from activelearn.config import Paths

#: How many contested items `consensus` lists unless told.
DEFAULT_TOP = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("agreement", help="inter-annotator agreement on the items labeled by several people",
                              description="Krippendorff's alpha overall and per class, Cohen's kappa for each "
                                          "annotator pair and the trend over time, each with the number of items "
                                          "behind it, over the items that two or more annotators labeled.")
    p.add_argument("--bins", default="D", metavar="N|FREQ",
                   help="trend periods: a number of equal periods, or a pandas frequency "
                        "(D = per day, W = per week; default D)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_agreement)

    p = subparsers.add_parser("consensus", help="consensus labels, annotator quality and the contested items",
                              description="CROWDLAB (cleanlab.multiannotator) weighs every annotator's votes and "
                                          "the model's probabilities: a consensus label and its quality per item, "
                                          "a quality per annotator, their accuracy against the consensus and a "
                                          "reference, and the contested items, lowest quality first.")
    p.add_argument("--version", metavar="V", help="model version whose probabilities are weighed (default: active)")
    p.add_argument("--reference", action="append", default=[], metavar="ANNOTATOR",
                   help="an annotator whose votes are the trusted reference (e.g. the lead's audit "
                        "decisions); they are the yardstick, so they are not part of the consensus (repeatable)")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"contested items to list (default {DEFAULT_TOP})")
    p.add_argument("--json", action="store_true", help="print every item's consensus and the figures as JSON")
    p.set_defaults(func=cmd_consensus)


def _bins(text: str) -> int | str:
    """--bins as a number of periods or a pandas frequency, refused in one sentence if it is neither."""
    from activelearn.agreement import AgreementError

    if text.isdigit():
        return int(text)
    try:
        pd.tseries.frequencies.to_offset(text)
    except ValueError:
        raise AgreementError(f"--bins {text!r} is neither a number of periods nor a frequency such as D or W") \
            from None
    return text


def _figure(value: float | None, n: int, unit: str = "") -> str:
    """A figure with the count behind it: "0.74 (43)", or "- (0 items)" when undefined."""
    return f"{'-' if value is None or math.isnan(value) else f'{value:.2f}'} ({n}{unit})"


def cmd_agreement(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import teams

    bins = _bins(args.bins)
    votes, names = teams.load_votes(paths)
    team = teams.agreement_report(votes, bins)
    shared, report, kappa, trend = team.overlapped, team.alpha, team.kappa, team.trend
    if args.json:
        print(json.dumps(team.as_dict(names), indent=2))
        return 0
    if shared.empty:
        print("no item has votes from two annotators yet: turn on overlap so that some items are labeled twice")
        return 0
    print(f"{report.overall.n_items} overlapped item(s), {report.overall.n_votes} votes, "
          f"{team.n_annotators} annotator(s)")
    print(f"Krippendorff's alpha: {_figure(report.overall.alpha, report.overall.n_items, ' items')}")
    print("per class (one vs rest; items where someone chose the class):")
    for row in report.per_class:
        print(f"  {names[row.class_index]:<16} {_figure(row.alpha, row.n_items_with_class)}")
    print("Cohen's kappa per pair (items both labeled):")
    width = max(len(n) for n in kappa.annotators) + 2
    print(" " * width + "".join(f"{n:>{width + 8}}" for n in kappa.annotators))
    for a in kappa.annotators:
        cells = ["-" if a == b else _figure(kappa.kappa.loc[a, b], int(kappa.n_items.loc[a, b]))
                 for b in kappa.annotators]
        print(f"{a:<{width}}" + "".join(f"{cell:>{width + 8}}" for cell in cells))
    print(f"trend (one period per {bins}):" if isinstance(bins, str) else f"trend ({bins} equal periods):")
    for point in trend:
        unanimous = "-" if math.isnan(point.unanimous) else f"{point.unanimous:.0%}"
        print(f"  {point.start:%Y-%m-%d %H:%M:%S}  alpha {_figure(point.alpha, point.n_items, ' items')}, "
              f"unanimous {unanimous}")
    return 0


def cmd_consensus(args: argparse.Namespace, paths: Paths) -> int:
    from activelearn import teams

    votes, names = teams.load_votes(paths)
    report = teams.consensus_report(paths, votes, args.reference, args.version)
    version, result, accuracy, queue = report.version, report.result, report.accuracy, report.queue
    left_out, reference = report.left_out_votes, report.reference
    if args.json:
        payload = result.as_dict()
        payload["annotators"] = [{**a.as_dict(), **accuracy[a.annotator].as_dict()} for a in result.annotators]
        print(json.dumps({"model_version": version, "classes": names, "left_out_votes": left_out,
                          "reference_items": len(reference), **payload,
                          "queue": [entry.as_dict() for entry in queue[:args.top]]}, indent=2))
        return 0
    if left_out:
        print(f"warning: {left_out} vote(s) left out: their items are not scored by {version} or their class "
              "is newer than it", file=sys.stderr)
    print(f"consensus of {len(result.item_ids)} item(s), {int((result.n_votes >= 2).sum())} with two or more "
          f"votes; model {version} weighed {result.model_weight:.2f}")
    print(f"{'annotator':<16}{'quality':>8}{'items':>7}{'vs consensus (n)':>19}{'vs reference (n)':>19}"
          "  worst class")
    for a in result.annotators:
        acc = accuracy[a.annotator]
        print(f"{a.annotator:<16}{a.quality:>8.3f}{a.n_items:>7}{_figure(acc.vs_consensus, acc.n_consensus):>19}"
              f"{_figure(acc.vs_reference, acc.n_reference):>19}  {names[a.worst_class]}")
    contested = [entry for entry in queue if entry.agreement < 1.0]
    print(f"{len(contested)} contested item(s), lowest consensus quality first:")
    for entry in contested[:args.top]:
        said = ", ".join(f"{who} {names[cls]!r}" for who, cls in entry.votes.items())
        print(f"  item {entry.item_id}: consensus {names[entry.consensus]!r} (quality {entry.quality:.2f}); {said}")
    return 0
