"""Load: 5 annotators and 2 CLI labelers at once against a real `python app.py`, then 1,000,000 events.

Part 1 (load). Builds a home with --n product photos (from Fashion-MNIST test images, the photo
cache of bench_label_latency) and an untrained model of the production architecture as v1
(latency does not depend on accuracy), starts `python app.py` with five annotator logins, and
runs at the same moment:

* 5 annotators, each --decisions decisions through the Label tab's own endpoints (/label_load
  once, then /decide: confirms, digit-style corrections, skips, rejects), timed per round trip
  (the client also downloads the photo and preview it is sent, as a browser does). By default
  each annotator makes the calls its browser page makes, on one kept-alive connection
  (BrowserLikeClient); --client gradio_client uses gradio_client instead, which costs ~175 ms of
  client CPU per call here and so measures the benchmark's own clients on these 2 cores;
* 2 CLI labelers, each looping `python -m activelearn query --n 20 --lease --annotator cliK
  --json` then `label --csv` of those items (--cli-batch), until the annotators are done.

Then it reads labels.db and prints: lost (decisions a client got an answer for that are not
stored), double-served (items shown to or decided by two annotators), errors (client
exceptions, refused decisions, failed CLI runs), decisions/s and latency p50/p95/max.
--concurrency sets GRADIO_DEFAULT_CONCURRENCY_LIMIT for the server (Gradio's default is 1:
every handler runs one request at a time, all tabs queue behind each other).

Part 2 (scale, --scale). A separate home with 100,000 items and 1,000,000 label events
(generated with one INSERT ... SELECT, through the same triggers as every decision), scored by the
untrained CNN; then, in-process and single-threaded, the server-side time of the header poll
(`ui.header_html`), of `store.status`, and of the Label tab's decide handler
(`label_tab.decide_item`: the event written, the next item served and its view built).

    flock /tmp/cpu.lock .venv/bin/python -m benchmarks.bench_load [--n 4000] [--decisions 400] \
        [--concurrency 1] [--client browser|gradio_client] [--scale]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from activelearn import FMNIST_CLASSES, store  # noqa: E402
from activelearn.config import resolve_paths  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ANNOTATORS = [f"ann{k}" for k in range(1, 6)]
CLI_LABELERS = ["cli1", "cli2"]
TARGET_RATE, TARGET_P95_MS, TARGET_SERVER_P95_MS = 20.0, 300.0, 100.0


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------- part 1: load

def start_server(paths, port: int, concurrency: int) -> subprocess.Popen:
    auth = [arg for name in ANNOTATORS for arg in ("--auth", f"{name}:pw-{name}:annotator")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_DEFAULT_CONCURRENCY_LIMIT": str(concurrency)}
    return subprocess.Popen([sys.executable, str(REPO / "app.py"), "--home", str(paths.home), "--fmnist-dir",
                             str(paths.fmnist_dir), "--port", str(port), *auth], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class BrowserLikeClient:
    """The Label tab's calls as its browser page makes them, on one kept-alive HTTP connection.

    Login, then per call: POST ``queue/join`` and read the session's ``queue/data`` event stream
    until the call's ``process_completed``; then fetch the files the answer names (photo, preview),
    as the page's <img> tags do. gradio_client makes the same calls but opens a new HTTP client
    (and TLS context) for each request, stream and download: measured 175 ms of client CPU per
    decision on these 2 cores, against the server's ~60 ms, so five of them in the benchmark's
    process measured the client, not the server. Annotators' browsers run on their own machines.
    """

    def __init__(self, url: str, auth: tuple[str, str]):
        import secrets

        import httpx
        self.http = httpx.Client(base_url=url, timeout=120)
        self.http.post("login", data={"username": auth[0], "password": auth[1]}).raise_for_status()
        config = self.http.get("config").json()
        self.prefix = config.get("api_prefix", "/gradio_api").strip("/")
        states = {c["id"] for c in config["components"] if c.get("type") == "state"}
        #: api name -> (fn index, which inputs and which outputs are session State): the page sends null
        #: for a State input (the server holds the value) and ignores State outputs, as gradio_client does
        self.endpoints = {dep["api_name"]: (dep["id"], [i in states for i in dep["inputs"]],
                                            [o in states for o in dep["outputs"]], dep.get("queue") is not False)
                          for dep in config["dependencies"] if dep.get("api_name")}
        self.session_hash = secrets.token_hex(6)

    def predict(self, *data, api_name: str) -> list:
        fn, state_inputs, state_outputs, queued = self.endpoints[api_name.lstrip("/")]
        given = iter(data)
        body = {"data": [None if state else next(given) for state in state_inputs], "fn_index": fn,
                "session_hash": self.session_hash, "event_data": None, "trigger_id": None}
        output = self._queued(body, api_name) if queued else self._direct(body)
        values = [value for value, state in zip(output["data"], state_outputs, strict=True) if not state]
        for value in values:
            if isinstance(value, dict) and value.get("url"):
                self.http.get(value["url"]).raise_for_status()
        return values

    def _direct(self, body: dict) -> dict:
        """An event with queue=False: the page POSTs it to run/predict and gets the answer back."""
        answer = self.http.post(f"{self.prefix}/run/predict", json=body)
        if answer.status_code != 200:
            raise RuntimeError(answer.json().get("error") or f"HTTP {answer.status_code}")
        return answer.json()

    def _queued(self, body: dict, api_name: str) -> dict:
        """A queued event: join the queue, then read the session's event stream until it completes."""
        joined = self.http.post(f"{self.prefix}/queue/join", json=body)
        joined.raise_for_status()
        event_id = joined.json()["event_id"]
        output = None
        with self.http.stream("GET", f"{self.prefix}/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") == event_id and message["msg"] == "process_completed":
                    output = message["output"]
                    if not message.get("success", True):
                        raise RuntimeError(output.get("error") or "the server reported an error")
                    break
        if output is None:
            raise RuntimeError(f"{api_name}: the event stream closed without an answer")
        return output


class Annotator:
    """One annotator's session deciding like a person at the keyboard, as fast as answers come."""

    def __init__(self, url: str, name: str, decisions: int, client: str = "browser"):
        self.name, self.decisions = name, decisions
        if client == "browser":
            self.client = BrowserLikeClient(url, (name, f"pw-{name}"))
        else:
            from gradio_client import Client
            self.client = Client(url, auth=(name, f"pw-{name}"), verbose=False)
        self.shown: list[int] = []            # every item put on this annotator's screen
        self.acknowledged: list[tuple[int, str]] = []
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.refused = 0
        self.view = None

    def load(self) -> None:
        self.view = self.client.predict(api_name="/label_load")
        if self.view[0] is not None:
            self.shown.append(int(self.view[0]))

    def run(self, start: threading.Barrier) -> None:
        start.wait()
        for step in range(self.decisions):
            item = self.view[0]
            if item is None:
                self.errors.append(f"step {step}: nothing on screen")
                return
            action, cls = (("skip", "") if step % 10 == 3 else ("reject", "") if step % 25 == 7 else
                           ("correct", str(step % 10)) if step % 5 == 1 else ("confirm", ""))
            started = time.perf_counter()
            try:
                view = self.client.predict(item, action, cls, api_name="/decide")
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            self.latencies.append(time.perf_counter() - started)
            notice = " ".join(str(part) for part in view if isinstance(part, str))
            if "not recorded" in notice:
                self.refused += 1
            else:
                self.acknowledged.append((int(item), action))
            self.view = view
            if view[0] is not None and int(view[0]) != int(item):
                self.shown.append(int(view[0]))


def cli_labeler(paths, name: str, batch: int, done: threading.Event, report: dict) -> None:
    """query --lease then label --csv, in a loop, until the annotators are done."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "activelearn", "--home", str(paths.home)]
    csv_file = Path(tempfile.gettempdir()) / f"bench-load-{os.getpid()}-{name}.csv"
    step = 0
    while not done.is_set():
        step += 1
        query = subprocess.run([*base, "query", "--n", str(batch), "--lease", "--annotator", name, "--json",
                                "--seed", str(step)], cwd=REPO, env=env, capture_output=True, text=True)
        if query.returncode != 0:
            report["errors"].append(query.stderr.strip()[-200:])
            continue
        items = [entry["item_id"] for entry in json.loads(query.stdout)]
        if not items:
            break
        report["served"].extend(items)
        csv_file.write_text("".join(f"{item},{FMNIST_CLASSES[(item + step) % 10]}\n" for item in items))
        started = time.perf_counter()
        label = subprocess.run([*base, "label", "--csv", str(csv_file), "--annotator", name], cwd=REPO, env=env,
                               capture_output=True, text=True)
        report["label_s"].append(time.perf_counter() - started)
        if label.returncode != 0:
            report["errors"].append(label.stderr.strip()[-200:])
        else:
            report["decided"].extend(items)
    csv_file.unlink(missing_ok=True)


def build_load_home(home: Path, fmnist_dir: Path, n: int):
    from benchmarks.bench_label_latency import build_home
    return build_home(home, fmnist_dir, n)


def run_load(args) -> int:
    from tests.helpers import free_port, wait_served
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        paths = build_load_home(Path(tmp) / "home", args.fmnist_dir, args.n)
        from activelearn.scoring import score_items
        score_items(paths)   # the score cache a running server would have
        if args.overlap:
            from activelearn import labeling
            labeling.set_overlap(store.open_db(paths.db), args.overlap, args.overlap_k)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        server = start_server(paths, port, args.concurrency)
        try:
            wait_served(url, server, timeout_s=300)
            annotators = [Annotator(url, name, args.decisions, args.client) for name in ANNOTATORS[:args.annotators]]
            for annotator in annotators:
                annotator.load()
            floor = gradio_floor(annotators[0].client)
            start = threading.Barrier(len(annotators) + 1)
            threads = [threading.Thread(target=a.run, args=(start,)) for a in annotators]
            for thread in threads:
                thread.start()
            done = threading.Event()
            cli_reports = {name: {"served": [], "decided": [], "errors": [], "label_s": []}
                           for name in CLI_LABELERS[:args.cli]}
            clis = [threading.Thread(target=cli_labeler, args=(paths, name, args.cli_batch, done, cli_reports[name]))
                    for name in cli_reports]
            loads = [load_average()]
            start.wait()
            began, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(server.pid), time.process_time()
            for thread in clis:
                thread.start()
            while any(t.is_alive() for t in threads):
                time.sleep(5)
                loads.append(load_average())
            wall = time.perf_counter() - began
            cpu = {"server": cpu_seconds(server.pid) - server_cpu, "clients": time.process_time() - client_cpu}
            done.set()
            for thread in clis:
                thread.join()
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        report(paths, annotators, cli_reports, wall, loads, args)
        decisions = sum(len(a.latencies) for a in annotators)
        print(f"  CPU per annotator decision while they ran: server {1000 * cpu['server'] / decisions:.1f} ms, "
              f"the {args.client} clients {1000 * cpu['clients'] / decisions:.1f} ms (CLI labelers not counted)")
        print(f"  Gradio's floor before the run: the header endpoint (one status read) takes p50 "
              f"{statistics.median(floor):.0f} ms · p95 {percentile(floor, 95):.0f} ms round trip from one idle client")
    return 0


def gradio_floor(client, count: int = 40) -> list[float]:
    """Round trips of the cheapest endpoint (/header): what every request costs before any labeling work."""
    return timed(lambda: client.predict(api_name="/header"), count)


def report(paths, annotators: list[Annotator], cli_reports: dict, wall: float, loads: list[str], args) -> None:
    db = store.open_db(paths.db)
    events = db.execute("SELECT item_id, annotator, action FROM labels WHERE action != 'undo'").fetchall()
    stored = Counter((item, who) for item, who, _ in events)
    lost = sum(1 for a in annotators for item, _ in a.acknowledged if stored[(item, a.name)] == 0)
    lost += sum(1 for name, r in cli_reports.items() for item in r["decided"] if stored[(item, name)] == 0)
    twice = sum(1 for count in stored.values() if count > 1)
    deciders: dict[int, set[str]] = defaultdict(set)
    for item, who, _ in events:
        deciders[item].add(who)
    shown_to: dict[int, set[str]] = defaultdict(set)
    for a in annotators:
        for item in a.shown:
            shown_to[item].add(a.name)
    for name, r in cli_reports.items():
        for item in r["served"]:
            shown_to[item].add(name)
    shared = ({item for item, who in shown_to.items() if len(who) > 1}
              | {item for item, who in deciders.items() if len(who) > 1})
    intended: set[int] = set()
    if args.overlap:   # drawn items may go to up to k people, one after the other: that is the point
        from activelearn import agreement
        ids = np.array(sorted(shared), dtype=np.int64)
        drawn = set(ids[agreement.overlap_draw(ids, args.overlap)].tolist()) if len(ids) else set()
        intended = {item for item in drawn if len(deciders[item]) <= args.overlap_k
                    and len(shown_to[item]) <= args.overlap_k}
    double_served = len(shared - intended)
    voted = {item for item, who, action in events if action in ("confirm", "correct") and who != "import"}
    errors = sum(len(a.errors) for a in annotators) + sum(len(r["errors"]) for r in cli_reports.values())
    refused = sum(a.refused for a in annotators)
    latencies = [1000 * t for a in annotators for t in a.latencies]
    ui_decisions = sum(len(a.acknowledged) for a in annotators)
    cli_decisions = sum(len(r["decided"]) for r in cli_reports.values())
    rate = ui_decisions / wall
    p50, p95 = statistics.median(latencies), percentile(latencies, 95)
    print(f"\nload: {len(annotators)} annotator(s) ({args.client} client) x {args.decisions} decisions through "
          f"/decide of a real app.py "
          f"(GRADIO_DEFAULT_CONCURRENCY_LIMIT={args.concurrency}), {len(cli_reports)} CLI labeler(s) "
          f"(query --lease + label --csv of {args.cli_batch}) at the same time; {args.n:,} photos; "
          f"{os.cpu_count()} CPU cores")
    print(f"  lost {lost} · double-served {double_served} · errors {errors} (refused decisions {refused}) · "
          f"decisions stored twice {twice}")
    if args.overlap:
        voters: dict[int, set[str]] = defaultdict(set)
        for item, who, action in events:
            if action in ("confirm", "correct") and who != "import":
                voters[item].add(who)
        multi = sum(len(voters[item]) >= 2 for item in intended)
        print(f"  overlap {args.overlap:.0%} / k={args.overlap_k}: {multi} of {len(voted)} voted items "
              f"({multi / max(1, len(voted)):.1%}) have two or more votes, from different people")
    print(f"  annotators: {ui_decisions} decisions in {wall:.1f} s = {rate:.1f} decisions/s "
          f"({'ok' if rate >= TARGET_RATE else 'UNDER TARGET'} >= {TARGET_RATE:.0f}/s)")
    print(f"  client round trip: p50 {p50:.0f} ms · p95 {p95:.0f} ms · max {max(latencies):.0f} ms "
          f"({'ok' if p95 < TARGET_P95_MS else 'OVER TARGET'} p95 < {TARGET_P95_MS:.0f} ms)")
    label_s = [s for r in cli_reports.values() for s in r["label_s"]]
    print(f"  CLI labelers: {cli_decisions} decisions in {len(label_s)} `label --csv` runs "
          f"(median run {statistics.median(label_s) if label_s else 0:.1f} s, process start included); "
          f"in all {(ui_decisions + cli_decisions) / wall:.1f} decisions/s")
    print(f"  load average during the run (1/5/15 min): {loads[0]} at start, {loads[-1]} at the end")
    for a in annotators:
        for error in a.errors[:3]:
            print(f"  error ({a.name}): {error}")
    for name, r in cli_reports.items():
        for error in r["errors"][:3]:
            print(f"  error ({name}): {error}")


# ---------------------------------------------------------------- part 2: 1,000,000 events

def build_scale_home(home: Path, fmnist_dir: Path, items: int, events: int):
    """items rows (random 28x28 pixels) and events label events by five annotators, bulk-inserted."""
    import numpy as np
    from activelearn import registry
    from activelearn.model import build_model
    paths = resolve_paths(home, fmnist_dir)
    db = store.open_db(paths.db)
    rng = np.random.default_rng(0)
    created = store.now()
    started = time.perf_counter()
    with store.transaction(db):
        db.conn.executemany(
            "INSERT INTO items (sha256, source, original_name, split, pixels, created_at) "
            "VALUES (?, 'folder', ?, ?, ?, ?)",
            ((f"{i:064x}", f"photo_{i}.jpg", "holdout" if i % 10 == 0 else "pool",
              rng.integers(0, 255, 784, dtype=np.uint8).tobytes(), created) for i in range(items)))
    decided = int(items * 0.8)   # events fall on the first 80% of items: the rest stays to be labeled
    with store.transaction(db):
        db.execute(
            "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) "
            "INSERT INTO labels (item_id, class_id, action, annotator, created_at) "
            "SELECT 1 + abs(random()) % ?, CASE WHEN k % 5 < 4 THEN k % 10 END, "
            "CASE k % 5 WHEN 0 THEN 'confirm' WHEN 1 THEN 'correct' WHEN 2 THEN 'confirm' WHEN 3 THEN 'confirm' "
            "ELSE (CASE WHEN k % 2 = 0 THEN 'skip' ELSE 'reject' END) END, 'ann' || (k % 5), ? FROM n",
            [events, decided, created])
    print(f"scale home: {items:,} items and {events:,} label events inserted in "
          f"{time.perf_counter() - started:.0f} s (through the triggers that keep item_state)")
    registry.register(paths.models, build_model(10),
                      {"metrics": {"fmnist_test": {"accuracy": 0.0}}, "hyperparameters": {},
                       "class_names": list(FMNIST_CLASSES)}, activate_now=True)
    from activelearn.scoring import score_items
    started = time.perf_counter()
    score_items(paths)
    print(f"scored {items:,} items in {time.perf_counter() - started:.0f} s")
    return paths


def timed(fn, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return times


def run_scale(args) -> int:
    from activelearn import ui
    from activelearn.ui import label_tab
    from activelearn.ui.context import UIContext
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        home = args.scale_home or Path(tmp) / "home"
        if (home / "labels.db").exists():
            paths = resolve_paths(home, args.fmnist_dir)
            print(f"scale home: reusing {home}")
        else:
            paths = build_scale_home(home, args.fmnist_dir, args.scale_items, args.scale_events)
        ctx = UIContext(paths, {})
        db = store.open_db(paths.db)
        print(f"{db.execute('SELECT COUNT(*) FROM labels').fetchone()[0]:,} events, "
              f"{db.execute('SELECT COUNT(*) FROM item_state').fetchone()[0]:,} items decided")
        status = timed(lambda: store.status(db), 50)
        header = timed(lambda: ui.header_html(ctx, None), 50)
        panel = label_tab.load_view(ctx, None, None)
        session = panel.session

        def decide(step: int) -> None:
            nonlocal panel
            action, cls = ("skip", None) if step % 10 == 3 else ("confirm", None)
            panel = label_tab.decide_item(ctx, session, panel.item_id, action, cls, None)

        decide_ms = []
        for step in range(args.scale_decisions):
            started = time.perf_counter()
            decide(step)
            decide_ms.append(1000 * (time.perf_counter() - started))
        print(f"\nscale: server-side ms at {args.scale_events:,} events / {args.scale_items:,} items, "
              f"single thread, load average {load_average()}")
        for name, values in (("store.status", status), ("header poll (ui.header_html)", header),
                             ("decide handler (label_tab.decide_item)", decide_ms)):
            verdict = "ok" if percentile(values, 95) < TARGET_SERVER_P95_MS else "OVER TARGET"
            print(f"  {name:<42} n={len(values):>4}  p50 {statistics.median(values):6.1f}  "
                  f"p95 {percentile(values, 95):6.1f}  max {max(values):6.1f}  {verdict} "
                  f"(p95 < {TARGET_SERVER_P95_MS:.0f} ms)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000,
                        help="photos imported for the load part (the pool must outlast every decision)")
    parser.add_argument("--decisions", type=int, default=400, help="decisions per annotator")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="GRADIO_DEFAULT_CONCURRENCY_LIMIT of the server (Gradio's default: 1)")
    parser.add_argument("--annotators", type=int, default=5, help="annotators (default 5)")
    parser.add_argument("--client", choices=("browser", "gradio_client"), default="browser",
                        help="how annotators call the server: the page's own calls on one kept-alive connection "
                             "(default) or gradio_client, whose per-request set-up costs ~175 ms CPU here")
    parser.add_argument("--cli", type=int, default=2, help="CLI labelers (default 2)")
    parser.add_argument("--cli-batch", type=int, default=20, help="items per CLI query --lease / label --csv round")
    parser.add_argument("--fmnist-dir", type=Path, default=REPO.parent / "shared" / "fashion-mnist")
    parser.add_argument("--overlap", type=float, default=0.0, metavar="SHARE",
                        help="turn overlap on for this share of items (e.g. 0.1): they go to --overlap-k people")
    parser.add_argument("--overlap-k", type=int, default=2)
    parser.add_argument("--scale", action="store_true", help="also run part 2 (1,000,000 events)")
    parser.add_argument("--scale-only", action="store_true", help="only part 2")
    parser.add_argument("--scale-items", type=int, default=100_000)
    parser.add_argument("--scale-events", type=int, default=1_000_000)
    parser.add_argument("--scale-decisions", type=int, default=200)
    parser.add_argument("--scale-home", type=Path, help="build the scale home here and keep it (reused if present)")
    args = parser.parse_args()
    if not args.scale_only:
        run_load(args)
    if args.scale or args.scale_only:
        run_scale(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
