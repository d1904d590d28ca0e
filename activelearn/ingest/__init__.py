"""Import scraped photos into labels.db without trusting them.

Inputs are folders (walked recursively), .zip / .tar(.gz|.bz2|.xz) archives, loose
files (what the UI uploads), .txt / .csv lists of image URLs, and bare http(s) URLs.
The package has three parts: `sources` reads those inputs under safety limits and
proves each file an image, `near_dups` finds near-duplicates of earlier photos, and
`importer` dedupes, converts, copies and inserts each accepted file in batches.
"""

from activelearn.ingest.importer import COMMIT_EVERY, ImportReport, ProgressCallback, import_paths
from activelearn.ingest.near_dups import (NEAR_DUP_MAX_CANDIDATES, NEAR_DUP_MAX_DISTANCE,
                                          NEAR_DUP_MIN_SIMILARITY, perceptual_hash, similarity, thumbnail)
from activelearn.ingest.sources import IMAGE_FORMATS, ImportLimits, Rejected

__all__ = ["COMMIT_EVERY", "IMAGE_FORMATS", "NEAR_DUP_MAX_CANDIDATES", "NEAR_DUP_MAX_DISTANCE",
           "NEAR_DUP_MIN_SIMILARITY", "ImportLimits", "ImportReport", "ProgressCallback", "Rejected",
           "import_paths", "perceptual_hash", "similarity", "thumbnail"]
