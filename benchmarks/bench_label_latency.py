"""Label submission -> next item ready: server-side latency, idle and while a retraining runs.

Builds a home with --n product photos (made once from Fashion-MNIST test images,
cached under $TMPDIR/activelearn-benchmark) imported through `ingest.import_paths`,
and an untrained model of the production architecture as v1 (latency does not
depend on accuracy). Serves the real app (build_app + launch_app) on 127.0.0.1
and drives it with gradio_client: --labels decisions through the /decide
endpoint (confirms, digit-style corrections, skips, rejects), like an annotator.

What is timed: inside the server, the Label tab's decide handler
(`label_tab.decide_item`, wrapped with a timer): the decision written to
labels.db, the next prefetched item taken (refilling the queue from
`labeling.next_items` when it runs low) and its view built (original path,
28x28 preview, top-3, counters), i.e. ready to return. Also reported: the
client's round trip (Gradio queue + encoding the preview PNG + HTTP + the
client downloading both images), which is an upper bound of what a browser waits.
The client runs in the server's process, so both figures include its share of the CPU.

The second run starts a fine-tuning job (a separate process training on all of
Fashion-MNIST for many epochs, so it lasts through the run) and measures again;
the job is cancelled afterwards.

    flock /tmp/cpu.lock .venv/bin/python -m benchmarks.bench_label_latency [--n 2000] [--labels 500]
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from activelearn import FMNIST_CLASSES, ingest, jobs, registry, store  # noqa: E402
from activelearn.config import resolve_paths  # noqa: E402
from activelearn.fmnist import load_fashion_mnist  # noqa: E402
from activelearn.synthetic import write_product_photos  # noqa: E402
from activelearn.ui import build_app, label_tab, launch_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(tempfile.gettempdir()) / "activelearn-benchmark"
#: A long fine-tune: the whole of Fashion-MNIST per epoch, far more epochs than the run needs.
LONG_RETRAIN = {"mode": "finetune", "epochs": 50, "fmnist_fraction": 1.0, "patience": 50}
TARGET_P95_MS = 100.0


def ensure_photos(fmnist_dir: Path, n: int) -> Path:
    """n product photos from the Fashion-MNIST test set, written once per n."""
    folder = CACHE / f"label-photos-{n}"
    if (folder / ".complete").exists():
        return folder
    data = load_fashion_mnist(fmnist_dir, download=False, progress=False)
    index = [i % len(data.x_test) for i in range(n)]
    write_product_photos(folder, data.x_test[index], data.y_test[index], FMNIST_CLASSES,
                         label_folders=False, seed=7)
    (folder / ".complete").touch()
    return folder


def build_home(home: Path, fmnist_dir: Path, n: int):
    paths = resolve_paths(home, fmnist_dir)
    started = time.perf_counter()
    report = ingest.import_paths(ensure_photos(fmnist_dir, n), paths=paths, holdout_fraction=0.1)
    print(f"home: {report.added} photos imported in {time.perf_counter() - started:.0f} s "
          f"({report.duplicates} duplicates, {report.near_duplicates} near-duplicates)")
    from activelearn.model import build_model
    registry.register(paths.models, build_model(10),
                      {"metrics": {"fmnist_test": {"accuracy": 0.0}}, "hyperparameters": {},
                       "class_names": list(FMNIST_CLASSES)}, activate_now=True)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_labels(client, count: int, handler_times: list[float]) -> tuple[list[float], list[float]]:
    """Decide `count` items like an annotator; returns (handler seconds, round-trip seconds)."""
    handler_times.clear()
    shown = client.predict(api_name="/label_load")
    handler_times.clear()  # the first paint is not a label submission
    round_trips = []
    for step in range(count):
        action, cls = ("skip", "") if step % 10 == 3 else ("reject", "") if step % 25 == 7 else \
            ("correct", str(step % 10)) if step % 5 == 1 else ("confirm", "")
        started = time.perf_counter()
        shown = client.predict(shown[0], action, cls, api_name="/decide")
        round_trips.append(time.perf_counter() - started)
        if shown[0] is None:
            raise SystemExit(f"the queue ran dry after {step + 1} labels: use a larger --n")
    return list(handler_times), round_trips


def table(title: str, rows: list[tuple[str, list[float], list[float]]]) -> None:
    print(f"\n{title}")
    print(f"{'':<20}{'labels':>7}{'handler p50':>13}{'p95':>9}{'max':>9}   {'round trip p50':>15}{'p95':>9}")
    for name, handler, trips in rows:
        ms = [1000 * t for t in handler]
        rt = [1000 * t for t in trips]
        verdict = "ok" if percentile(ms, 95) < TARGET_P95_MS else "OVER TARGET"
        print(f"{name:<20}{len(ms):>7}{statistics.median(ms):>10.1f} ms{percentile(ms, 95):>6.1f} ms"
              f"{max(ms):>6.0f} ms   {statistics.median(rt):>12.1f} ms{percentile(rt, 95):>6.1f} ms  {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="photos imported (>= 2 x --labels + holdout)")
    parser.add_argument("--labels", type=int, default=500, help="decisions timed per run")
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    args = parser.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="bench-label-") as tmp:
        paths = build_home(Path(tmp) / "home", args.fmnist_dir, args.n)
        handler_times: list[float] = []

        def timed(fn):
            @functools.wraps(fn)
            def wrapper(*a, **kw):
                started = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    handler_times.append(time.perf_counter() - started)
            return wrapper

        label_tab.decide_item = timed(label_tab.decide_item)  # build()'s closures look it up at call time
        demo = build_app(paths, {})
        port = free_port()
        launch_app(demo, paths, [], port=port, prevent_thread_lock=True, quiet=True)
        db = store.open_db(paths.db)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            idle = run_labels(client, args.labels, handler_times)

            job = jobs.start_training(paths, LONG_RETRAIN)
            while (job := jobs.get_job(db, job.id)).phase not in ("train", "epoch-end"):
                if not job.active:
                    raise SystemExit(f"retraining ended before the run: {job.status} {job.message}")
                time.sleep(0.5)
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)  # a second annotator session
            busy = run_labels(client, args.labels, handler_times)
            job = jobs.get_job(db, job.id)
            still = f"still {job.status}, {label_tab.job_progress(job)}" if job.active else f"{job.status}!"
        finally:
            for j in jobs.list_jobs(db):
                if j.active:
                    jobs.cancel(db, j.id)
                    jobs.wait(db, j.id, timeout_s=300)
            demo.close()
        events = db.execute("SELECT COUNT(*) FROM labels WHERE annotator = 'local'").fetchone()[0]
        print(f"{events} label events recorded (expected {2 * args.labels}); "
              f"{os.cpu_count()} CPU cores; the retraining job was {still} when the run ended")
        table(f"label -> next item ready (ms), {args.n:,} imported items, target p95 < {TARGET_P95_MS:.0f} ms "
              "(handler = inside the server)",
              [("idle", *idle), ("while retraining", *busy)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
