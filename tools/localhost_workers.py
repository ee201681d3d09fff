"""A recipe as a multi-worker job on this machine, against the same recipe in one process.

Starts ``--workers`` copies of ``recipes/<recipe>.py`` with ``--strategy multi_worker``, each given a
``TF_CONFIG`` of the same cluster on 127.0.0.1 (free ports) and its own task index, then the recipe in one
process (``--strategy none``) at the same global batch. It prints, for each, the test loss and accuracy,
the updates applied and the steady time per epoch, and the largest difference of their final weights:
that checks an installation's multi-worker training against the single process, and is the figure behind
the README's "More than one device".

    python -m tools.localhost_workers -- --dataset mnist --model vit_mnist_patch4_28 --batch-size 128 \\
        --accum 2 --epochs 2 --limit-train 2048 --precision float32 --no-jit --optimizer sgd

Everything after ``--`` goes to the recipe (``--logdir`` and ``--strategy`` are the tool's). The workers
share this machine's cores, so their time per epoch is a check that the job runs, not a speed-up.
"""

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(count):
    """``count`` TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(recipe, args, count=2, env=None, **popen):
    """``count`` processes of ``recipes/<recipe>.py args --strategy multi_worker`` forming one cluster on
    127.0.0.1; worker 0 is the chief. Returns the ``subprocess.Popen`` objects."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes = []
    for index in range(count):
        config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "recipes", f"{recipe}.py"), *args, "--strategy", "multi_worker"],
            env=dict(env if env is not None else os.environ, TF_CONFIG=json.dumps(config)), **popen))
    return processes


def weights_file_arrays(path):
    """The arrays of a Keras ``.weights.h5`` file, ordered by their names in it."""
    import h5py

    arrays = []
    with h5py.File(path, "r") as stored:
        stored.visititems(lambda name, item: arrays.append((name, item[()])) if isinstance(item, h5py.Dataset)
                          else None)
    return [value for _, value in sorted(arrays, key=lambda pair: pair[0])]


def final_weights(logdir):
    """The arrays of the one model.weights.h5 under ``logdir``."""
    [path] = glob.glob(os.path.join(logdir, "**", "model.weights.h5"), recursive=True)
    return weights_file_arrays(path)


def study_result(logdir):
    """The one run result of the study written under ``logdir`` (its results.json)."""
    [path] = glob.glob(os.path.join(logdir, "**", "results.json"), recursive=True)
    [found] = json.load(open(path))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="gao_swin")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("recipe_args", nargs=argparse.REMAINDER, help="after --: the recipe's flags")
    args = parser.parse_args(argv)
    recipe_args = [a for a in args.recipe_args if a != "--"]
    root = tempfile.mkdtemp(prefix="localhost-workers-")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    rows = {}
    for label, command in ((f"{args.workers} workers", "workers"), ("1 process", "single")):
        logdir = os.path.join(root, command)
        flags = [*recipe_args, "--logdir", logdir, "--verbose", "0"]
        if command == "workers":
            processes = start_workers(args.recipe, flags, args.workers, env=env, stdout=subprocess.DEVNULL)
        else:
            processes = [subprocess.Popen([sys.executable, os.path.join(ROOT, "recipes", f"{args.recipe}.py"), *flags,
                                           "--strategy", "none"], env=env, stdout=subprocess.DEVNULL)]
        if any(p.wait() != 0 for p in processes):
            sys.exit(f"error: the {label} run failed (its messages are above)")
        rows[label] = (study_result(logdir), final_weights(logdir))
    (workers, weights_w), (single, weights_s) = rows.values()
    print("\n| run | test loss | test accuracy | updates | time/epoch (s, steady) |\n|---|---|---|---|---|")
    for label, (found, _) in rows.items():
        print(f"| {label} | {found['test_loss']:.7f} | {found['test_accuracy']:.4f} | {found['updates']} | "
              f"{found['time_per_epoch']:.1f} |")
    difference = max(float(np.abs(a - b).max()) for a, b in zip(weights_w, weights_s))
    loss = abs(workers["test_loss"] - single["test_loss"]) / abs(single["test_loss"])
    print(f"\ntest loss relative difference {loss:.1e}; largest final-weight difference {difference:.1e} "
          f"({len(weights_s)} arrays); runs under {root}")


if __name__ == "__main__":
    main()
