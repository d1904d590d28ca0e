"""Where the seed CNN's augmentation runs: as model layers or in a tf.data map.

Trains the seed architecture for 2 epochs on N Fashion-MNIST images each way and prints
images/s and cores busy. Usage (from the repo root):

    python -m benchmarks.bench_seed_pipeline --fmnist-dir ../shared/fashion-mnist [--images 20000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from activelearn import model as cnn
from activelearn.fmnist import load_fashion_mnist

keras = cnn.keras


def measure(x: np.ndarray, targets: np.ndarray, in_model: bool, batch_size: int, epochs: int = 2) -> tuple[float, float]:
    network = cnn.build_model(10)
    if in_model:   # the pre-2026-12-02 layout: random layers inside the network, run on the training thread
        inputs = keras.Input((28, 28))
        network = keras.Model(inputs, network(cnn.augmentation(0)(inputs)))
    cnn.compile_model(network, learning_rate=3e-3, decay_steps=1000, label_smoothing=0.1)
    data = cnn.training_dataset(x, targets, batch_size=batch_size, seed=0, augment=not in_model)
    wall, cpu = time.monotonic(), time.process_time()
    network.fit(data, epochs=epochs, shuffle=False, verbose=0)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return len(x) * epochs / wall, cpu / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fmnist-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    data = load_fashion_mnist(args.fmnist_dir, download=False, progress=False)
    x, targets = data.x_train[:args.images], keras.utils.to_categorical(data.y_train[:args.images], 10)
    for label, in_model in (("augmentation as model layers", True), ("augmentation in a tf.data map", False)):
        rate, cores = measure(x, targets, in_model, args.batch_size)
        print(f"{label:<32} {cnn.compute_policy():<15} {rate:7.0f} images/s  {cores:.2f} cores busy", flush=True)


if __name__ == "__main__":
    main()
