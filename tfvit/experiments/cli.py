"""What the study recipes share on the command line: every run flag, checkpoint arguments, and writing a
study's tables at the end.

Every recipe takes the same run flags (``add_run_arguments``), each with the recipe's own default where
its study has one, and ``RunConfig.from_args`` turns them into the run configuration: one path from a
flag to the train step. Values are checked when the flags are parsed, so a bad one ends in argparse's
usage line naming the flag, before anything is loaded.

``run_recipe(main)`` runs a recipe as a command: a mistake of the user's (missing or damaged data, a
setting tfvit refuses, a path that cannot be used, a run whose loss turned NaN) ends in one paragraph
``error: ...`` on stderr and exit status 1, Ctrl-C in one line saying which epochs are saved and exit
status 130 (SIGTERM, as a scheduler or ``kill`` sends it, the same line and 143); ``--debug`` shows the traceback
instead. Any other exception is a bug and keeps its traceback. tfvit's warnings are one line ``warning: ...``.
"""

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings

import tfvit
from tfvit.convert.hub import hub_checkpoint, is_hub_reference, parse_hub_reference
from tfvit.data import DataError
from tfvit.data.info import DATASETS
from tfvit.errors import UserError
from tfvit.experiments.report import markdown_table, write_tables
from tfvit.models.pretrained import pretrained_source
from tfvit.training.device_defaults import training_defaults
from tfvit.training.distribution import STRATEGIES, strategy_for, writable
from tfvit.training.finite_loss import NonFiniteLoss
from tfvit.training.resume import TrainingInterrupted

# Paths the command line named (--logdir, --data-dir, --checkpoint; their defaults too): a file error about
# one of them, or about a file under one, is the user's to fix (run_recipe prints it without a traceback).
GIVEN_PATHS = set()
# File errors that are the user's when they concern a path the user gave.
PATH_ERRORS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)


class UsageError(Exception):
    """A recipe called in a way it cannot run (a name, a path, a combination of flags); the message says
    which flag and what to do. ``run_recipe`` prints it without a traceback."""


def _given_path(text):
    """argparse type of the path flags: the path, remembered as one the user gave."""
    GIVEN_PATHS.add(os.path.abspath(os.path.expanduser(text)))
    return text


def _number(kind, low=None, high=None, low_open=False, high_open=True, what=""):
    """An argparse type: ``kind`` (int or float) within [low, high) (or the bounds given as open)."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above or value != value:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, 1, what="an integer >= 1")
non_negative_int = _number(int, 0, what="an integer >= 0")
positive_float = _number(float, 0.0, float("inf"), low_open=True, what="a number > 0")
non_negative_float = _number(float, 0.0, float("inf"), what="a number >= 0")
fraction = _number(float, 0.0, 1.0, what="a number in [0, 1)")


def _drop_path(text):
    """--drop-path: a rate in [0, 1), or a negative number for the model's own rate."""
    value = _number(float, what="a number")(text)
    return value if value < 0 else fraction(text)


def add_run_arguments(parser, datasets=DATASETS, **defaults):
    """Add the flags of every recipe to ``parser``: data, batch and accumulation, schedule, optimizer,
    regularisation, precision and XLA, seed, log root, quick-run limits, output. ``defaults`` replace
    the flags' defaults by destination name (``epochs=60``, ``lr=1e-4``, ``dataset="mnist"``, ...);
    ``datasets`` are the dataset choices. Returns the parser."""
    device = training_defaults()
    flags = [
        ("--dataset", dict(choices=sorted(datasets), default="cifar10")),
        ("--data-dir", dict(type=_given_path,
                            help="folder with the datasets' official files (else $TFVIT_DATA_DIR, then tfds)")),
        ("--epochs", dict(type=positive_int, default=10)),
        ("--batch-size", dict(type=positive_int, default=128, help="effective batch per optimizer update")),
        ("--accum", dict(type=positive_int, default=1,
                         help="gradient accumulation: micro-batches per update, exact (the same update as the batch)")),
        ("--lr", dict(type=positive_float, default=1e-3, help="peak learning rate (warmup, then cosine decay)")),
        ("--optimizer", dict(choices=["adamw", "sgd"], default="adamw")),
        ("--weight-decay", dict(type=non_negative_float, help="decoupled weight decay (default: AdamW 0.05, SGD 1e-4)")),
        ("--warmup-epochs", dict(type=non_negative_float, default=1.0)),
        ("--label-smoothing", dict(type=fraction, default=0.0)),
        ("--augment", dict(default="", help="comma-separated: crop_flip, randaugment, mixup, cutmix ('' for none)")),
        ("--dropout", dict(type=fraction, default=0.0, help="dropout rate")),
        ("--drop-path", dict(type=_drop_path, default=-1.0, help="stochastic depth rate (negative: the model's own)")),
        ("--image-size", dict(type=non_negative_int, default=0, help="resize images to this side (0: the model's own)")),
        ("--patience", dict(type=non_negative_int, default=0, help="early stopping patience in epochs (0: off)")),
        ("--precision", dict(choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"], default="auto",
                             help=f"dtype policy (auto: this device's fastest measured, here {device.precision})")),
        ("--jit", dict(action=argparse.BooleanOptionalAction, default=None,
                       help=f"compile train steps with XLA, or not (default: the device's fastest, here "
                            f"{'--jit' if device.jit_compile else '--no-jit'})")),
        ("--seed", dict(type=non_negative_int, default=0)),
        ("--strategy", dict(choices=STRATEGIES, default="auto",
                            help="devices: auto (all GPUs when there are two or more), none (one device), mirrored "
                                 "(this machine's GPUs or logical CPUs), multi_worker (the cluster in TF_CONFIG); "
                                 "--batch-size stays the global batch")),
        ("--logdir", dict(type=_given_path, default="logs",
                          help="root of the runs, tables and figures (tensorboard --logdir)")),
        ("--limit-train", dict(type=non_negative_int, default=0, help="use only the first N training images")),
        ("--limit-test", dict(type=non_negative_int, default=0, help="use only the first N test images")),
        ("--save-best", dict(action="store_true",
                             help="also keep the best epoch's model as best.keras (with its optimizer state)")),
        ("--verbose", dict(type=int, default=1, choices=[0, 1, 2], help="Keras progress output")),
        ("--debug", dict(action="store_true", help="show the traceback of an error instead of one paragraph")),
    ]
    unknown = set(defaults) - {flag[2:].replace("-", "_") for flag, _ in flags}
    if unknown:
        raise ValueError(f"add_run_arguments: no flags for the defaults {sorted(unknown)}.")
    for flag, options in flags:
        dest = flag[2:].replace("-", "_")
        if dest in defaults:
            options = dict(options, default=defaults[dest])
        if "default" in options and options.get("action") is None:
            options["help"] = (options.get("help", "") + " (default: %(default)s)").strip()
        parser.add_argument(flag, **options)
    return parser


def checkpoint_pair(text):
    """argparse type of ``--checkpoint MODEL=SOURCE``: a path, or a hub repository ``hf-hub:ORG/NAME[@REVISION]``."""
    model, sep, source = text.partition("=")
    if not sep or not model.strip() or not source.strip():
        raise argparse.ArgumentTypeError(f"expected MODEL=PATH.safetensors or MODEL=hf-hub:ORG/NAME, got {text!r}")
    source = source.strip()
    if is_hub_reference(source):
        try:
            parse_hub_reference(source)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return model.strip(), source
    return model.strip(), _given_path(source)


def add_checkpoint_arguments(parser, models_help):
    """``--checkpoint MODEL=SOURCE`` (repeatable) and ``--pretrained`` (each model's registry checkpoint);
    ``models_help`` says which names MODEL takes. ``resolve_checkpoints`` turns them into {model: source}."""
    parser.add_argument("--checkpoint", action="append", type=checkpoint_pair, default=[], metavar="MODEL=SOURCE",
                        help=f"weights to start MODEL from ({models_help}; repeatable): a .safetensors file or "
                             f"save_pretrained folder, or a hub repository hf-hub:ORG/NAME[@REVISION] (downloaded "
                             f"once into the Hugging Face cache)")
    parser.add_argument("--pretrained", action="store_true",
                        help="start every model from its registry checkpoint on the hub (tfvit.list_models("
                             "pretrained=True)); --checkpoint replaces it for a model")
    return parser


def resolve_checkpoints(pairs, pretrained=None):
    """{model: source} from ``--checkpoint`` pairs, after ``pretrained`` ({model: registry name}, ``--pretrained``:
    each model's registry checkpoint). Everything is checked before any training: a missing file raises
    FileNotFoundError, a model without a registry checkpoint a UsageError, and hub checkpoints are fetched now
    (a progress bar while downloading; offline without a cached copy, an error in seconds saying how to get it)."""
    checkpoints = {}
    for model, registry_name in (pretrained or {}).items():
        try:
            checkpoints[model] = pretrained_source(registry_name).reference
        except ValueError as error:
            hint = f"Give --checkpoint {model}=... for it, or leave it out."
            raise UsageError(f"--pretrained: {error} {hint}") from None
    checkpoints.update(pairs)
    for source in checkpoints.values():
        if is_hub_reference(source):
            hub_checkpoint(source)
        elif not os.path.exists(source):
            raise FileNotFoundError(f"checkpoint {source!r} does not exist.")
    return checkpoints


def prepare_logdir(path, flag="--logdir"):
    """Create the log root ``path`` (given as ``flag``) and check that files can be written in it, before any
    training; returns ``path``. Raises UsageError naming the flag and the reason."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path!r} is not a UTF-8 path: TensorBoard's event files (TensorFlow's writers) "
                         f"take UTF-8 paths only. Give a folder whose name is UTF-8.") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is a file, not a folder: give a folder for the runs, tables and figures "
                         f"(it is created if missing).")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        if isinstance(error, (NotADirectoryError, FileExistsError)):
            reason = "part of the path is a file, not a folder"
        raise UsageError(f"{flag} {path!r} cannot be used: {reason} ({error.filename or path}). Give a folder "
                         f"where this user can create files.") from error
    return path


def _under(path, folders):
    path = os.path.abspath(path)
    return any(path == folder or path.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def user_error(error, code_folders=()):
    """Whether ``error`` is the user's to fix, not a bug: DataError, UsageError, tfvit's ``UserError``s (a run
    in use by another process, a resume state that cannot be written) and NonFiniteLoss (a run that
    diverged: its settings or data are the user's); a ValueError raised by a
    ``raise`` statement of tfvit's code or of ``code_folders`` (the recipes): its own checks, e.g. an unknown
    model name or an ``accum`` larger than the batch; a file error (``PATH_ERRORS``) about a path the command
    line gave, or raised with its own message (no file name) by that code."""
    if isinstance(error, (DataError, UsageError, UserError, NonFiniteLoss)):
        return True
    # One of tfvit's own checks: a ``raise`` statement in its code (not, say, numpy failing inside a call from it).
    frames = traceback.extract_tb(error.__traceback__)
    raised_by_us = bool(frames) and (frames[-1].line or "").startswith("raise ") and _under(
        frames[-1].filename, [os.path.dirname(tfvit.__file__), *code_folders])
    if isinstance(error, PATH_ERRORS):
        names = [n for n in (error.filename, error.filename2) if isinstance(n, (str, bytes, os.PathLike))]
        if names:
            return any(_under(os.fsdecode(n), GIVEN_PATHS) for n in names)
        return raised_by_us
    return isinstance(error, ValueError) and raised_by_us


def error_text(error):
    """The one paragraph ``run_recipe`` prints for a user's error."""
    def path(name):
        return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)

    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{path(error.filename)}: {error.strerror}"
        if error.filename2 is not None:
            text += f" ({path(error.filename2)})"
    else:
        text = str(error).strip() or type(error).__name__
    return f"error: {text}"


def _debug_flag(argv):
    """Whether ``argv`` asks for ``--debug`` (read before the recipe parses it, as argparse would)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--debug", action="store_true")
    try:
        return parser.parse_known_args(argv)[0].debug
    except SystemExit:  # an ambiguous abbreviation: the recipe's own parser will say so
        return False


def _strategy_flag(argv):
    """The ``--strategy`` that ``argv`` asks for (None when it names none or argparse would refuse it)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--strategy")
    try:
        return parser.parse_known_args(argv)[0].strategy
    except SystemExit:
        return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, so that a run stops as on Ctrl-C (its saved epochs kept)."""


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises ``Terminated`` while the block runs (in the main thread; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """tfvit's warnings as one line ``warning: ...`` (they say what to do); others as Python shows them."""
    if _under(filename, [os.path.dirname(tfvit.__file__)]):
        print(f"warning: {message}", file=sys.stderr, flush=True)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def run_recipe(main, argv=None):
    """Run a recipe's ``main(argv)`` as a command (``if __name__ == "__main__": run_recipe(main)``).

    A user's error (``user_error``) prints ``error: <message>`` (one paragraph) on stderr and exits with
    status 1; Ctrl-C prints one line on stderr (for a run: the epoch it stopped in and the epochs saved,
    ``TrainingInterrupted``) and exits with 130, as shells report SIGINT; SIGTERM the same line, beginning
    "terminated (SIGTERM)", and 143. With ``--debug`` both are raised with their traceback; any other exception
    always is. argparse's own errors exit with 2 as usual. tfvit's own warnings print as ``warning: <message>``.
    ``--strategy multi_worker`` joins the cluster of ``TF_CONFIG`` first, before the recipe runs anything."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_flag(argv)
    source = getattr(getattr(main, "__code__", None), "co_filename", None)
    code_folders = [os.path.dirname(os.path.abspath(source))] if source else []
    try:
        with _sigterm_as_interrupt(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if _strategy_flag(argv) == "multi_worker":
                # MultiWorkerMirroredStrategy must join its cluster before TensorFlow runs anything in the process.
                strategy_for("multi_worker")
            return main(argv)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        sys.stdout.flush()
        terminated = isinstance(interrupt, Terminated) or isinstance(interrupt.__cause__, Terminated)
        if isinstance(interrupt, TrainingInterrupted):
            interrupt.signal_name = "terminated (SIGTERM)" if terminated else None
            print(str(interrupt), file=sys.stderr)
        else:
            print("terminated (SIGTERM)" if terminated else "interrupted", file=sys.stderr)
        sys.exit(143 if terminated else 130)
    except Exception as error:
        if debug or not user_error(error, code_folders):
            raise
        sys.stdout.flush()
        print(error_text(error), file=sys.stderr)
        sys.exit(1)


def comma_list(text):
    """The items of a comma-separated flag value, stripped, empty ones dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def write_study(results, out_dir, table=None, extra_lines=()):
    """results.csv/.json/.md, and study_table.md when the study has its own ``table`` (plus ``extra_lines``);
    prints the study's table (else the results table) and the paths written."""
    paths = write_tables(results, out_dir)
    written = [paths["md"], paths["csv"], paths["json"]]
    if table is not None:
        written.insert(0, os.path.join(writable(out_dir), "study_table.md"))  # write_tables made the folder
        with open(written[0], "w") as f:
            f.write(table + "\n" + "".join(f"\n{line}" for line in extra_lines) + ("\n" if extra_lines else ""))
    print("\n" + (markdown_table(results) if table is None else table) + "\n")
    print(f"tables: {', '.join(written)}")
    return written[0]
