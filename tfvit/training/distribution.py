"""Data-parallel training on the engines Keras already has: ``tf.distribute`` on TensorFlow,
``keras.distribution`` on JAX.

``strategy_for(name)`` turns the recipes' ``--strategy`` into one (made once per process):

- ``"none"``: one device (None).
- ``"auto"``: MirroredStrategy over all visible GPUs when there are two or more, else none
  (on JAX: ``keras.distribution.DataParallel`` over two or more accelerators).
- ``"mirrored"``: MirroredStrategy over this machine's GPUs, or its logical CPUs when it has no GPU
  (on JAX: DataParallel over all devices, ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` on a CPU).
- ``"multi_worker"``: MultiWorkerMirroredStrategy, each process one worker of the cluster that the
  ``TF_CONFIG`` environment variable describes, as TensorFlow documents it
  (``{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}``).
  TensorFlow only.

How the data reach the replicas (``replica_batches``): every worker builds the same global batches
(one shuffle order and augmentation from the seed and epoch, mixup and cutmix across the whole
batch, as in a single process) and keeps its replicas' consecutive slices of each: replica r of R
gets examples [floor(r b / R), floor((r + 1) b / R)) of a batch of b. Every update therefore sees the
examples of the single-process run's update, each replica knows where its slice starts
(``keyed_random.replica_slice``: dropout and stochastic-depth masks keyed on the global example
index) and ``GradientAccumulationModel`` weighs the slices by the global batch (``accumulation_tf.py``).
On JAX the train step sees the global batch, which Keras lays out across the devices.

Only the chief writes (``is_chief``, ``writable``): the chief of a multi-worker cluster is task
``chief``, else worker 0. The other workers write what they would have written under a temporary
folder of their own, removed when the process ends, as TensorFlow's multi-worker guide recommends;
they read the chief's files (a finished result, the resume state), so a shared file system lets a
restarted job continue where the chief's state stands.
"""

import atexit
import contextlib
import json
import os
import shutil
import tempfile

import keras

STRATEGIES = ("auto", "none", "mirrored", "multi_worker")
# One strategy per process: TensorFlow's collective ops are configured once, when the first is made.
_MADE = {}


class StrategyError(ValueError):
    """A ``--strategy`` that cannot run here; the message says why and what to do."""


def strategy_for(name="auto"):
    """The distribution of ``name`` (one of ``STRATEGIES``): a ``tf.distribute.Strategy`` on
    TensorFlow, a ``keras.distribution.DataParallel`` on JAX, or None for a single device. Made once
    per process and name; enter it with ``scope(distribution)`` around building, compiling and
    fitting the model."""
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}.")
    if name not in _MADE:
        made = _jax_distribution(name) if keras.backend.backend() == "jax" else _tf_strategy(name)
        _MADE[name] = made
    return _MADE[name]


def _tf_strategy(name):
    import tensorflow as tf

    if name == "multi_worker":  # first: the collective ops are configured before anything starts TensorFlow's runtime
        cluster = tf_config()
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as error:
            if "startup" in str(error):
                raise StrategyError("--strategy multi_worker must be chosen before TensorFlow runs anything in "
                                    "this process: call tfvit.training.strategy_for('multi_worker') first, "
                                    "before building models or data.") from error
            raise StrategyError(f"--strategy multi_worker could not join the cluster of TF_CONFIG "
                                f"({json.dumps(cluster)}): {error}") from error
    gpus = tf.config.list_logical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return None
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def tf_config():
    """The ``TF_CONFIG`` of this process, checked: a cluster with workers and this process's task in it."""
    text = os.environ.get("TF_CONFIG")
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\' (index 1 on the second machine)')
    if not text:
        raise StrategyError(f"--strategy multi_worker needs the TF_CONFIG environment variable on every worker, "
                            f"e.g. {example}.")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        tasks = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise StrategyError(f"TF_CONFIG is not a cluster and a task ({type(error).__name__}: {error}); expected "
                            f"{example}.") from None
    if not 0 <= index < len(tasks) or "worker" not in cluster and "chief" not in cluster:
        raise StrategyError(f"TF_CONFIG's task {task} is not in its cluster {cluster}.")
    return config


def _jax_distribution(name):
    if name == "multi_worker":
        raise StrategyError("--strategy multi_worker is TensorFlow's MultiWorkerMirroredStrategy; under "
                            "KERAS_BACKEND=jax use --strategy mirrored (keras.distribution.DataParallel over "
                            "this machine's devices) or KERAS_BACKEND=tensorflow.")
    devices = keras.distribution.list_devices()
    accelerators = [d for d in devices if not d.lower().startswith("cpu")]
    if name == "none" or (name == "auto" and len(accelerators) < 2):
        return None
    return keras.distribution.DataParallel(devices=accelerators if name == "auto" else devices)


def replicas(distribution):
    """How many model replicas ``distribution`` trains (1 for None)."""
    if distribution is None:
        return 1
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    return len(distribution.device_mesh.devices.reshape(-1))


def scope(distribution):
    """``distribution.scope()``, or nothing to enter for a single device."""
    return contextlib.nullcontext() if distribution is None else distribution.scope()


def replica_batches(dataset, distribution):
    """``dataset`` (batches of the global size) as each replica's consecutive slice of every batch (see the
    module's docstring): a ``tf.distribute`` DistributedDataset for a TensorFlow strategy of more than one
    replica, else ``dataset`` unchanged (on JAX, Keras lays the global batch out across the devices)."""
    if distribution is None or not hasattr(distribution, "distribute_datasets_from_function") \
            or distribution.num_replicas_in_sync == 1:
        return dataset
    import tensorflow as tf

    def slices(context):
        total = context.num_replicas_in_sync
        local = total // context.num_input_pipelines
        mine = range(context.input_pipeline_id * local, (context.input_pipeline_id + 1) * local)

        def split(*batch):
            batch = batch[0] if len(batch) == 1 else batch  # tf.data passes a tuple element as arguments
            size = tf.shape(tf.nest.flatten(batch)[0])[0]
            bounds = tf.range(total + 1) * size // total
            pieces = [tf.data.Dataset.from_tensors(tf.nest.map_structure(lambda t: t[bounds[r]:bounds[r + 1]], batch))
                      for r in mine]
            out = pieces[0]
            for piece in pieces[1:]:
                out = out.concatenate(piece)
            return out

        # Each input pipeline's successive elements go to its local replicas in order.
        return dataset.flat_map(split)

    return distribution.distribute_datasets_from_function(slices)


def is_chief():
    """Whether this process writes the run's files: True but on the non-chief workers of a
    multi-worker strategy made in this process (or of a multi-process JAX job)."""
    made = _MADE.get("multi_worker")
    if made is not None:
        return bool(made.extended.should_checkpoint)
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    return True


_SCRATCH = []


def writable(path):
    """Where this process writes what belongs at ``path``: ``path`` itself on the chief, else the same path
    under this worker's temporary folder (made on first use, removed at exit)."""
    if is_chief():
        return path
    if not _SCRATCH:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
        folder = tempfile.mkdtemp(prefix=f"tfvit-{task.get('type', 'worker')}{task.get('index', '')}-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _SCRATCH.append(folder)
    absolute = os.path.abspath(os.fspath(path))
    return os.path.join(_SCRATCH[0], os.path.relpath(absolute, os.path.abspath(os.sep)))


def symbolic_build(model, iterator=None, data_batch=None):
    """Keras's ``_maybe_symbolic_build`` (``fit`` and ``evaluate`` build the model, its metrics and loss from
    the shapes of one batch), from the shapes the distributed dataset declares.

    Keras 3 takes a first batch from the data for it and averages it across the replicas with
    ``strategy.reduce`` on the whole (x, y) structure, which MultiWorkerMirroredStrategy does not take
    (keras-team/keras#20585: ``fit`` fails under it before the first step); and the batch it takes starts
    a pass over the data that training then does not see (``tfvit.data.load`` counts passes as epochs, so
    training would begin at the next epoch's order). The shapes and dtypes are all it needs: here they come
    from the dataset's ``element_spec``. Returns whether it built (False: not distributed, Keras's path)."""
    strategy = getattr(model, "_distribute_strategy", None)
    if keras.backend.backend() != "tensorflow" or strategy is None or iterator is None:
        return False
    import tensorflow as tf

    def first_replica(spec):
        specs = getattr(spec, "_value_specs", None)  # a PerReplicaSpec: one spec per local replica
        return specs[0] if specs else spec

    data_batch = tf.nest.map_structure(first_replica, iterator._get_iterator().element_spec)
    with strategy.scope():
        model._symbolic_build(data_batch=data_batch)
    return True


def synchronized_logs(model, logs):
    """A train or test step's ``logs`` as the metrics of the whole global batch, the same on every replica.

    Inside a step under ``tf.distribute`` each replica's metrics hold its own examples; Keras averages the
    replicas' results into the logs of each batch (what the progress bar, ``StepScalars`` and the NaN check
    see; its epoch logs read the summed variables), which is the global value only when every replica had
    as many examples, and under MultiWorkerMirroredStrategy fails on scalars (it reduces along an axis 0
    that they lack: keras-team/keras#20585). Here the metrics' variables are summed (or averaged, as each variable's
    ``aggregation`` says) across the replicas and every result computed from those, so a Mean such as the
    loss or the accuracy is sum(total) / sum(count) exactly; under a multi-worker strategy each value is
    given a length-1 axis for Keras's reduction. ``logs`` unchanged on one replica and off TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return logs
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return logs
    variables = [v for metric in model.metrics for v in metric.variables]
    ops = {"sum": tf.distribute.ReduceOp.SUM, "mean": tf.distribute.ReduceOp.MEAN}
    mapping = []
    for kind, op in ops.items():
        chosen = [v for v in variables if getattr(v, "aggregation", None) == kind]
        if chosen:
            mapping += zip(chosen, context.all_reduce(op, [tf.identity(v.value) for v in chosen]))
    with keras.StatelessScope(state_mapping=mapping):
        logs = model.get_metrics_result()
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def numpy_value(variable):
    """A Keras variable's value as a numpy array, under a ``tf.distribute`` strategy its first local
    replica's copy (the replicas' copies of a model's and an optimizer's variables are equal), which numpy
    cannot take from the distributed variable itself under MultiWorkerMirroredStrategy."""
    value = variable.value
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(value, tf.distribute.DistributedValues):
            value = value._get_on_device_or_primary() if hasattr(value, "_get_on_device_or_primary") else \
                tf.distribute.get_strategy().experimental_local_results(value)[0]
    return keras.ops.convert_to_numpy(value)


@contextlib.contextmanager
def expected_end_of_data(distribution):
    """Silence Keras's "Your input ran out of data" while ``fit`` or ``evaluate`` reads ``replica_batches`` of a
    finite dataset under ``distribution``: such a dataset has no length Keras can use (tf.distribute counts
    a worker's elements, one per local replica and batch), so Keras warns at the end of every evaluation,
    which is where the data is meant to end. Nothing changes on one replica."""
    if replicas(distribution) == 1:
        yield
        return
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        yield


def check_even_batches(distribution, batch_size, examples):
    """On JAX, refuse batches that ``distribution``'s devices cannot share equally: Keras lays each batch out
    across them in equal parts, so the batch size and each split's last, shorter batch (``examples``:
    {split: number of examples}) must divide by the number of devices. (tf.distribute takes uneven slices.)"""
    devices = replicas(distribution)
    if keras.backend.backend() != "jax" or devices == 1:
        return
    for split, count in examples.items():
        sizes = {batch_size} | ({count % batch_size} if count % batch_size else set())
        uneven = sorted(size for size in sizes if size % devices)
        if uneven:
            raise StrategyError(
                f"the {split} split's {count} examples come in batches of {sorted(sizes, reverse=True)}, and "
                f"keras.distribution.DataParallel shares every batch equally among the {devices} devices: use a "
                f"--batch-size and a number of examples (--limit-{split}) that divide by {devices}.")
