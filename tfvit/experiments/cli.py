"""What the study recipes share on the command line: the run flags every study has, checkpoint
arguments, and writing a study's tables and figure at the end."""

import argparse
import os

from tfvit.experiments.report import write_tables


def add_run_arguments(parser):
    """The flags of every recipe: data location, precision, XLA, seed, log root, quick-run limits, output."""
    parser.add_argument("--data-dir", help="folder with the datasets' official files (else $TFVIT_DATA_DIR, then tfds)")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"], default="auto",
                        help="dtype policy (default auto: the fastest measured for this device, "
                             "tfvit.training.training_defaults)")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                        help="compile train steps with XLA, or not (default: the device's fastest)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logdir", default="logs")
    parser.add_argument("--limit-train", type=int, default=0, help="use only the first N training images")
    parser.add_argument("--limit-test", type=int, default=0, help="use only the first N test images")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras progress output")
    return parser


def checkpoint_pair(text):
    """argparse type of ``--checkpoint MODEL=PATH``."""
    model, sep, path = text.partition("=")
    if not sep or not model.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected MODEL=PATH.safetensors, got {text!r}")
    return model.strip(), path.strip()


def existing_checkpoints(pairs):
    """{model: path} from ``--checkpoint`` pairs, failing before any training when a file is missing."""
    checkpoints = dict(pairs)
    for path in checkpoints.values():
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint {path!r} does not exist.")
    return checkpoints


def write_study(results, out_dir, table, extra_lines=()):
    """results.csv/.json/.md and study_table.md (``table`` plus ``extra_lines``); prints the table and paths."""
    paths = write_tables(results, out_dir)
    study_path = os.path.join(out_dir, "study_table.md")
    with open(study_path, "w") as f:
        f.write(table + "\n" + "".join(f"\n{line}" for line in extra_lines) + ("\n" if extra_lines else ""))
    print("\n" + table + "\n")
    print(f"tables: {study_path}, {paths['csv']}, {paths['md']}")
    return study_path
