"""Store operations per second, SQLite against PostgreSQL, at 100,000 and 1,000,000 items.

For each backend and size it builds a database through the store's own migrations, fills it
with one INSERT ... SELECT per table (so the triggers keep item_state and undecided_items as
every decision does), labels a tenth of the items, then times, single-threaded, in this
process:

* label decision: `store.record_decision` on an undecided item (the lease check, the event,
  the triggers, the lease released: one transaction);
* next item: `labeling.next_items(n=1, take_lease=True)` without a model (the queue's store
  work: undecided ids, others' leases, the lease written in one transaction; with a model the
  uncertainty ranking over the cached scores comes on top, the same on both backends);
* status: `store.status` (the header poll).

PostgreSQL is a throw-away cluster on loopback (tests.helpers.postgres_server, durability
off as in the tests: fsync and synchronous commit off, so its figures are an upper bound for
a tuned server with a battery-backed disk) or $ACTIVELEARN_TEST_PG.

    flock /tmp/cpu.lock .venv/bin/python -m benchmarks.bench_store [--sizes 100000 1000000] [--ops 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from activelearn import labeling, store  # noqa: E402
from activelearn.config import resolve_paths  # noqa: E402

_FILL_SQLITE = """
WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?)
INSERT INTO items (sha256, source, original_name, split, pixels, created_at)
SELECT printf('%064x', k), 'folder', 'p' || k || '.jpg', CASE WHEN k % 10 = 0 THEN 'holdout' ELSE 'pool' END,
       zeroblob(784), '2026-01-01T00:00:00.000+00:00' FROM n"""
_FILL_PG = """
INSERT INTO items (sha256, source, original_name, split, pixels, created_at)
SELECT lpad(to_hex(k), 64, '0'), 'folder', 'p' || k || '.jpg', CASE WHEN k % 10 = 0 THEN 'holdout' ELSE 'pool' END,
       decode(repeat('00', 784), 'hex'), '2026-01-01T00:00:00.000+00:00' FROM generate_series(1, ?) AS k"""
_LABEL = """
INSERT INTO labels (item_id, class_id, action, annotator, created_at)
SELECT id, id % 10, 'confirm', 'seed', '2026-01-02T00:00:00.000+00:00' FROM items WHERE id % 10 = 3"""


def build(location: str, items: int) -> None:
    db = store.open_db(location)
    with store.transaction(db):
        db.execute(_FILL_PG if store.is_postgres(db) else _FILL_SQLITE, [items])
        db.execute(_LABEL)


def timed(fn, count: int) -> list[float]:
    times = []
    for step in range(count):
        started = time.perf_counter()
        fn(step)
        times.append(time.perf_counter() - started)
    return times


def measure(location: str, home: Path, ops: int) -> dict[str, list[float]]:
    db = store.open_db(location)
    paths = resolve_paths(home, home / "unused", location if store.is_postgres(db) else None)
    undecided = store.unlabeled_ids(db, "pool")[:ops]
    return {
        "label decision": timed(lambda k: store.record_decision(
            db, int(undecided[k]), "confirm", class_id=k % 10, annotator="bench"), len(undecided)),
        "next item": timed(lambda k: labeling.next_items(paths, annotator="bench", n=1, seed=k), max(20, ops // 4)),
        "status": timed(lambda k: store.status(db), max(20, ops // 4)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ops", type=int, default=200, help="decisions per case (next item, status: a quarter)")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    from tests.helpers import pg_schema_url, postgres_server
    print(f"machine: {os.cpu_count()} CPU cores; load at start {os.getloadavg()[0]:.2f}")
    print("| backend | items | operation | ops/s | p50 | p95 | build |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |", flush=True)
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for backend in args.backends:
            for size in args.sizes:
                home = Path(tmp) / f"{backend}-{size}"
                if backend == "postgresql":
                    if server is None:
                        print("| postgresql | – | no server (install postgresql or set ACTIVELEARN_TEST_PG) |")
                        break
                    location = pg_schema_url(server, f"bench_{size}")
                else:
                    location = str(home / "labels.db")
                started = time.perf_counter()
                build(location, size)
                built = time.perf_counter() - started
                for operation, times in measure(location, home, args.ops).items():
                    ms = sorted(1000 * t for t in times)
                    print(f"| {backend} | {size:,} | {operation} | {len(ms) / (sum(ms) / 1000):,.0f} | "
                          f"{statistics.median(ms):.1f} ms | {ms[int(0.95 * (len(ms) - 1))]:.1f} ms | {built:.0f} s |",
                          flush=True)
    print(f"load at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
