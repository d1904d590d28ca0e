"""The dataset card: what an export holds, where it came from, and how to load it.

Every export carries one: README.md inside a folder or zip, else
``<file name>.README.md`` beside the file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from activelearn import __version__, store
from activelearn.export.selection import ExportFilters

CARD_NAME = "README.md"
#: How to load each format, shown at the end of the card ({name}: the data file).
_LOADING = {
    "imagefolder": (
        "Each split folder holds one folder per class it has items of (no empty folders:\n"
        "torchvision refuses them). Loaders number classes by sorted folder name within the\n"
        "folder they are given, not by the index above, so a split that lacks a class numbers\n"
        "the others differently: map labels through the loader's class names and the table above.\n\n"
        "```python\nimport keras\ntrain = keras.utils.image_dataset_from_directory(\"train\", image_size=(224, 224))\n"
        "train.class_names  # folder names; torchvision: datasets.ImageFolder(\"train\").classes\n```"),
    "fmnist": (
        "The files of Fashion-MNIST, with the same names, dtypes and shapes; labels are the\n"
        "indices above (one class name per line of `classes.txt`, in index order):\n\n"
        "```python\nimport numpy as np\nwith np.load(\"fashion-mnist.npz\") as data:\n"
        "    (x_train, y_train), (x_test, y_test) = (data[\"x_train\"], data[\"y_train\"]), "
        "(data[\"x_test\"], data[\"y_test\"])\n```"),
    "csv": "```python\nimport pandas as pd\nmanifest = pd.read_csv(\"{name}\")\n```\n\n"
           "`annotators` lists everyone whose decision still stands, separated by ';'.",
    "jsonl": "```python\nimport pandas as pd\nmanifest = pd.read_json(\"{name}\", lines=True)\n```",
    "parquet": "```python\nfrom datasets import load_dataset\n"
               "ds = load_dataset(\"parquet\", data_files=\"{name}\")[\"train\"]  # column `split`: train/test\n"
               "```\n\n`image` decodes to a PIL image and `label` is a ClassLabel with the names above.",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(*, title: str, fmt: str, data_name: str, classes: Sequence[store.ClassInfo],
          folders: dict[int, str], counts: dict[str, Counter], sources: Counter, annotators: Counter,
          model_version: str | None, filters: ExportFilters, scan: dict | None,
          warnings: Sequence[str]) -> str:
    split_names = [split for split in ("train", "test") if counts.get(split)]
    total = sum(sum(c.values()) for c in counts.values())
    class_rows = [[info.id, info.name, folders[info.id],
                   *(counts[s].get(info.id, 0) for s in split_names),
                   sum(counts[s].get(info.id, 0) for s in split_names)]
                  for info in classes if any(counts[s].get(info.id) for s in split_names)]
    filter_lines = filters.describe() or ["none: every confirmed or corrected item"]
    if filters.exclude_label_errors and scan:
        filter_lines.append(f"label issues from scan {scan['id']} of {scan['created_at']}")
    parts = [
        f"# {title}", "",
        f"Exported {store.now()} by activelearn {__version__} in the `{fmt}` format.", "",
        f"- Items: {total} ({', '.join(f'{s} {sum(counts[s].values())}' for s in split_names)})",
        "- Labels: each item's current confirm/correct decision in labels.db, or the majority vote "
        "(decision `consensus`) where several people labeled it; pool items are `train`, holdout items `test`",
        "- Class index = labels.db class id (Fashion-MNIST classes 0-9, added classes from 10)",
        f"- Model version active at export: {model_version or 'none'}",
        "- Filters: " + "; ".join(filter_lines), "",
        "## Items per class", "",
        _table(["index", "class", "folder", *split_names, "total"], class_rows), "",
        "## Sources", "", _table(["source", "items"], sorted(sources.items())), "",
        "## Annotators (current decision)", "", _table(["annotator", "items"], sorted(annotators.items())), "",
        "## Loading", "", _LOADING[fmt].replace("{name}", data_name), "",
    ]
    if warnings:
        parts += ["## Notes", "", *(f"- {w}" for w in warnings), ""]
    return "\n".join(parts)
