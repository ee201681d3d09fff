"""Data-parallel training (``--strategy``) against one process at the same global batch, on the generated
owners'-format MNIST: two MultiWorkerMirroredStrategy workers on 127.0.0.1 (TF_CONFIG, free ports), the
same job killed in its second epoch and restarted, and MirroredStrategy on two logical CPUs through the
Python API. The reference is the single process: same test loss (rel. 1e-4) and final weights (atol 1e-5).

SGD, not the recipes' AdamW: the key bias of attention has an exactly zero gradient (softmax does not change
when a constant is added to every score), so its gradient is rounding noise, which Adam divides by its own
root-mean-square into updates of the learning rate's size; with it the same check is 1.2e-5 on those biases
and 1e-6 elsewhere.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from tests.recipes.loading import ROOT
from tfvit.training.resume import resume_epoch
from tools import localhost_workers


def arguments(data_dir, logdir, epochs=1):
    return ["--dataset", "mnist", "--data-dir", str(data_dir), "--model", "vit_mnist_patch4_28", "--batch-size", "32",
            "--accum", "2", "--epochs", str(epochs), "--limit-train", "128", "--limit-test", "64", "--optimizer", "sgd",
            "--lr", "0.05", "--precision", "float32", "--no-jit", "--verbose", "0", "--logdir", str(logdir)]


def environment(tmp_path, **extra):
    # Each process's temporary folder is the test's, so that a worker's scratch folder is seen to go.
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(scratch), PYTHONPATH=str(ROOT), **extra)


def start_workers(args, tmp_path):
    return localhost_workers.start_workers("gao_swin", args, 2, env=environment(tmp_path), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)


def finish(processes, timeout=420):
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


def single_process(data_dir, logdir, tmp_path, epochs=1):
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "gao_swin.py"),
                           *arguments(data_dir, logdir, epochs), "--strategy", "none"],
                          env=environment(tmp_path), capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]


def assert_same_training(distributed, single):
    """Same final test loss and weights as the single process."""
    a, b = localhost_workers.study_result(distributed), localhost_workers.study_result(single)
    assert abs(a["test_loss"] - b["test_loss"]) <= 1e-4 * abs(b["test_loss"]), (a["test_loss"], b["test_loss"])
    assert a["updates"] == b["updates"] and a["test_accuracy"] == b["test_accuracy"]
    weights_a, weights_b = localhost_workers.final_weights(distributed), localhost_workers.final_weights(single)
    assert len(weights_a) == len(weights_b) > 0
    differences = [float(np.abs(x - y).max()) for x, y in zip(weights_a, weights_b)]
    assert max(differences) < 1e-5, max(differences)
    return a


def test_two_workers_train_as_one_process_and_only_the_chief_writes(tmp_path, owner_data):
    workers = start_workers(arguments(owner_data, tmp_path / "workers"), tmp_path)
    single_process(owner_data, tmp_path / "single", tmp_path)
    chief_output, worker_output = finish(workers)
    assert_same_training(tmp_path / "workers", tmp_path / "single")
    [folder] = (tmp_path / "workers" / "gao_swin" / "mnist" / "accumulation").iterdir()
    [single] = (tmp_path / "single" / "gao_swin" / "mnist" / "accumulation").iterdir()
    # One process wrote the run: the files of the single process's run, all from one process id (TensorBoard
    # puts it in the event files' names), and one row per epoch.
    events = sorted(path.relative_to(folder).parent for path in folder.rglob("events.out.tfevents.*"))
    assert events == sorted(path.relative_to(single).parent for path in single.rglob("events.out.tfevents.*"))
    assert len({path.name.split(".")[4] for path in folder.rglob("events.out.tfevents.*")}) == 1
    files = lambda run: sorted(p.name for p in run.iterdir() if not p.name.startswith("events."))
    assert files(folder) == files(single)
    assert (folder / "history.csv").read_text().count("\n") == 2
    assert "tables: " + str(tmp_path / "workers") in chief_output
    assert "tables: " + str(tmp_path / "workers") not in worker_output  # it wrote them in its temporary folder
    assert not list((tmp_path / "tmp").glob("tfvit-worker*"))  # which it removed at exit


def test_a_job_killed_in_its_second_epoch_and_restarted_ends_as_one_process(tmp_path, owner_data):
    args = arguments(owner_data, tmp_path / "workers", epochs=2)
    reference = subprocess.Popen([sys.executable, str(ROOT / "recipes" / "gao_swin.py"),
                                  *arguments(owner_data, tmp_path / "single", epochs=2), "--strategy", "none"],
                                 env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chief, worker = start_workers(args, tmp_path)
    run = tmp_path / "workers" / "gao_swin" / "mnist" / "accumulation"
    deadline = time.time() + 300
    while time.time() < deadline and chief.poll() is None:
        states = [resume_epoch(folder / "resume") for folder in run.glob("*")] if run.exists() else []
        if max(states, default=0) >= 1:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the chief saved no epoch: {chief.communicate(timeout=60)[1][-3000:]}")
    worker.kill()  # one worker dies in epoch 2; the chief waits on it in a collective, and is stopped too
    worker.wait()
    chief.send_signal(signal.SIGKILL)
    chief.wait()
    assert not list(run.glob("*/result.json"))  # the job did not finish before the kill
    finish(start_workers(args, tmp_path))
    assert reference.wait(timeout=420) == 0, reference.stderr.read()[-3000:]
    resumed = assert_same_training(tmp_path / "workers", tmp_path / "single")
    # The restarted job began at epoch 2 (0-based 1) from the chief's state, and has both epochs' rows.
    assert resumed["traced_epochs"] == [0, 1] and resumed["epochs_run"] == 2


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    from tfvit.experiments import RunConfig, run, trained_model
    from tfvit.training import distribution

    logdir, data_dir = sys.argv[1], sys.argv[2]
    report = {}
    for strategy in ("none", "mirrored"):
        # 101 examples: the last batch of 5 splits 2 / 3 across the replicas (micro-batches of 1 and 2, the
        # second replica's padded), and the evaluation's last batch of 3 (of 67 test examples) 1 / 2.
        config = RunConfig(dataset="mnist", model="vit_mnist_patch4_28", batch_size=32, accum=2, epochs=1,
                           optimizer="sgd", learning_rate=0.05, precision="float32", jit=False, limit_train=101,
                           limit_test=67, data_dir=data_dir, strategy=strategy, drop_path=0.1)
        found = run(config, logdir=f"{logdir}/{strategy}", verbose=0)
        weights = [w.numpy() for w in trained_model(found, f"{logdir}/{strategy}").weights]
        report[strategy] = {"loss": found["test_loss"], "history": found["history"]["loss"], "weights": weights}
    print(json.dumps({
        "replicas": distribution.replicas(distribution.strategy_for("mirrored")),
        "loss": [report[s]["loss"] for s in report], "train_loss": [report[s]["history"][0] for s in report],
        "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(report["none"]["weights"],
                                                                    report["mirrored"]["weights"]))}))
""")


def test_mirrored_on_two_logical_cpus_trains_as_one_device_through_the_python_api(tmp_path, owner_data):
    # Stochastic depth on: each replica's examples draw the masks of their place in the global batch.
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path), str(owner_data)], capture_output=True,
                          text=True, env=environment(tmp_path), timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    single, mirrored = report["loss"]
    assert abs(single - mirrored) <= 1e-4 * abs(single), report
    assert abs(report["train_loss"][0] - report["train_loss"][1]) <= 1e-4 * report["train_loss"][0], report
    assert report["max_diff"] < 1e-5, report
