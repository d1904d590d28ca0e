"""Export the curated dataset: labeled items in the formats other tools read.

Only items whose current decision is confirm/correct are exported, each with a
dataset card. The package has four parts: `selection` (filters and the manifest
rows), `bundle` (staging and the atomic publish), `formats` (the writers) and
`card` (the dataset card); `exporter` ties them together in `export_dataset`.
"""

from activelearn.export.card import CARD_NAME
from activelearn.export.exporter import ExportResult, ProgressFn, export_dataset
from activelearn.export.formats import (CLASSES_FILE, FORMATS, KERAS_EXTENSIONS, NPZ_NAME, class_folder_names,
                                        parquet_schema)
from activelearn.export.selection import CHUNK, SPLIT_NAMES, ExportFilters
from activelearn.store import IMPORT_ANNOTATOR

__all__ = ["CARD_NAME", "CHUNK", "CLASSES_FILE", "FORMATS", "IMPORT_ANNOTATOR", "KERAS_EXTENSIONS", "NPZ_NAME",
           "SPLIT_NAMES", "ExportFilters", "ExportResult", "ProgressFn", "class_folder_names", "export_dataset",
           "parquet_schema"]
