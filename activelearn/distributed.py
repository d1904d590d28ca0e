"""Ray for the heavy batch work: pool embedding and CNN pool scoring on a cluster.

Off by default: one process on one machine is what a newcomer needs. With
`--ray auto|ADDRESS` (or $ACTIVELEARN_RAY) the embedding job and the CNN's pool
scoring run as Ray Data `map_batches` jobs with one actor per worker CPU, each
holding the model it built once. Every actor call is one batch of the local path
(the same items in the same order), so the numbers are the local ones; the driver
keeps writing to the store, so the database has one writer per job as before.

Workers read photos and model versions from the same home path and the
database from the same location as the driver: on several machines the home is
a shared folder (NFS or similar, one mount path) and the labels live in
PostgreSQL (`--db`). This module imports Ray only when a job runs on it.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import activelearn
from activelearn import errors
from activelearn.config import RAY_ENV, Paths
from activelearn.errors import ActiveLearnError

#: Environment each job's actors take from the driver at that moment (where the weights are, quiet TensorFlow).
FORWARDED_ENV = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL")


def ray_address() -> str | None:
    """'auto', a cluster address, or None (run in this process), from $ACTIVELEARN_RAY."""
    return os.environ.get(RAY_ENV) or None


def connect(address: str, *, num_cpus: int | None = None) -> None:
    """Join the cluster once per process: 'auto' is a running one (RAY_ADDRESS, `ray start`), else a local one.

    `num_cpus` caps a local instance this call starts (default: every CPU).

    The package travels to the workers (`py_modules`), so a cluster needs only
    the same Python dependencies installed, not activelearn itself.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # nothing calls the internet
    import ray
    if ray.is_initialized():
        return
    runtime_env = {"py_modules": [str(Path(activelearn.__file__).parent)]}
    options: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False,
                               "configure_logging": False}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **options)
            except ConnectionError:   # no cluster running: start one on this machine
                ray.init(include_dashboard=False, num_cpus=num_cpus, **options)
        else:
            _check_reachable(address)
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ActiveLearnError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    import ray.data
    ray.data.DataContext.get_current().enable_progress_bars = False   # progress goes to our own bar


def _check_reachable(address: str) -> None:
    """Fail in seconds on a cluster nobody answers at: Ray itself retries for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc})") from None


def workers() -> int:
    """One actor per CPU of the cluster (each runs TensorFlow on one thread)."""
    import ray
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _driver_env() -> dict[str, str]:
    return {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}


def _start_actor(env: dict[str, str]) -> None:
    """Take the driver's environment, and pin TensorFlow to the actor's one CPU (no oversubscription)."""
    os.environ.update(env)
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _batches(actor: type, args: tuple, chunks: int, address: str, rows_per_yield: int) -> Any:
    """Iterate the outputs of `actor` over chunk numbers 0..chunks-1, `rows_per_yield` rows at a time.

    Batch size 1 over chunk numbers makes each actor call exactly one local-path batch.
    """
    connect(address)
    import ray.data
    # from_items holds the chunk numbers in the driver: no read task competes with the actors for CPUs
    dataset = ray.data.from_items([{"chunk": k} for k in range(chunks)]).map_batches(
        actor, fn_constructor_args=args, batch_size=1, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(workers(), chunks)), num_cpus=1)
    return dataset.iter_batches(batch_size=rows_per_yield, batch_format="numpy")


def _ray_failure(exc: Exception) -> ActiveLearnError:
    """One sentence for a failed Ray job: the worker's own ActiveLearnError where there is one.

    A RayTaskError keeps the worker's exception as `.cause`; an actor that died in
    its constructor keeps only the traceback text, so its last error line is read.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ActiveLearnError):
        return type(cause)(str(cause))
    text = str(exc)
    found = re.findall(r"^activelearn\.errors\.(\w+): (.+)$", text, flags=re.MULTILINE)
    if found:
        name, message = found[-1]
        return getattr(errors, name, ActiveLearnError)(message)
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ActiveLearnError(f"the Ray job failed: {first_line}")


class _EmbedActor:
    """Holds one backbone; each call embeds one local-path batch of (item id, stored path)."""

    def __init__(self, env: dict[str, str], paths: Paths, backbone: str,
                 batches: Sequence[Sequence[tuple[int, str | None]]]):
        _start_actor(env)
        from activelearn import backbones, embeddings
        self.paths, self.batches = paths, batches
        self.size = backbones.get_spec(backbone).input_size
        self.embed = embeddings.embedding_fn(backbone)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from activelearn.embeddings import load_item_photo
        items = self.batches[int(batch["chunk"][0])]
        loaded = [load_item_photo(self.paths, self.size, item) for item in items]
        return {"item_id": np.array([item_id for item_id, _ in items], np.int64),
                "vector": self.embed(np.stack([photo for photo, _ in loaded])),
                "from_28x28": np.array([used for _, used in loaded], bool)}


def embed_round(paths: Paths, backbone: str, todo: list[tuple[int, str | None]],
                report: Callable[[dict], Any], *, address: str) -> tuple[int, int, bool]:
    """`embeddings._embed_round` on Ray: (embedded, from 28x28, cancelled); results are stored as they come."""
    from activelearn import store
    from activelearn.embeddings import BATCH, COMMIT_EVERY
    batches = [todo[i:i + BATCH] for i in range(0, len(todo), BATCH)]
    db = store.open_db(paths.db)
    started = time.monotonic()
    embedded = fallback = 0
    try:
        for out in _batches(_EmbedActor, (_driver_env(), paths, backbone, batches), len(batches), address,
                            COMMIT_EVERY):
            store.put_embeddings(db, backbone, out["item_id"].tolist(), out["vector"])
            embedded += len(out["item_id"])
            fallback += int(out["from_28x28"].sum())
            done = -(-embedded // BATCH)
            elapsed = time.monotonic() - started
            if report({"phase": "embed", "epoch": 1, "epochs": 1, "batch": done, "batches": len(batches),
                       "eta_s": elapsed / done * (len(batches) - done)}):
                return embedded, fallback, True   # leaving the iterator stops the Ray job
    except ActiveLearnError:
        raise
    except Exception as exc:   # a Ray error wraps the worker's own: say it in one sentence
        raise _ray_failure(exc) from None
    return embedded, fallback, False


class _ScoreActor:
    """Holds one CNN version; each call scores one local-path chunk of item ids."""

    def __init__(self, env: dict[str, str], paths: Paths, version: str, chunks: Sequence[np.ndarray]):
        _start_actor(env)
        from activelearn import registry
        self.model = registry.load_model(paths.models, version)
        self.paths, self.chunks = paths, chunks

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from activelearn import store
        from activelearn.scoring import score_chunk
        ids = self.chunks[int(batch["chunk"][0])]
        # calls may come on another thread than __init__'s, and a SQLite connection stays on its own
        probs, embeddings = score_chunk(store.open_db(self.paths.db), self.model, ids)
        return {"item_id": ids, "probs": probs, "embedding": embeddings}


def score_pixels(paths: Paths, version: str, item_ids: np.ndarray,
                 progress: Callable[[int, int], None] | None, *,
                 address: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CNN over the items' 28x28 images on Ray: (item ids ascending, probs, embeddings)."""
    from activelearn.scoring import SCORE_BATCH
    chunks = [item_ids[i:i + SCORE_BATCH] for i in range(0, len(item_ids), SCORE_BATCH)]
    ids, probs, embeddings = [], [], []
    try:
        for out in _batches(_ScoreActor, (_driver_env(), paths, version, chunks), len(chunks), address,
                            SCORE_BATCH):
            ids.append(out["item_id"])
            probs.append(out["probs"])
            embeddings.append(out["embedding"])
            if progress:
                progress(sum(map(len, ids)), len(item_ids))
    except ActiveLearnError:
        raise
    except Exception as exc:
        raise _ray_failure(exc) from None
    order = np.argsort(np.concatenate(ids), kind="stable")
    return (np.concatenate(ids)[order], np.concatenate(probs)[order].astype(np.float32),
            np.concatenate(embeddings)[order].astype(np.float32))
