"""A real recipe process whose end of run waits for the test: ``python -m tests.recipes.end_of_run_child RECIPE
ARGS...`` runs ``recipes/RECIPE.py ARGS...`` through ``run_recipe`` (as its command line does), and at each step
of a run's end prints a line ``@@<point>`` (flushed) and reads a line from stdin before it goes on, so that
tests/recipes/test_end_of_run.py can stop it at that point of the run's progress, not of the wall clock.

The points, in order: ``evaluate`` (the final evaluation is about to begin), ``eval_batch`` (after each of its
batches), ``weights`` (the final weights are about to be written), ``weights_in_place`` (written to a temporary
file, which is about to be renamed model.weights.h5), ``weights_written``, ``result`` (result.json is about to be
written), ``result_in_place`` (likewise) and ``result_written`` (next: the resume state is deleted).
"""

import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from tests.recipes.loading import load_recipe  # noqa: E402
from tfvit.experiments.cli import run_recipe  # noqa: E402

run_module = importlib.import_module("tfvit.experiments.run")  # the package's name ``run`` is the function


def say(point):
    print(f"@@{point}", flush=True)
    sys.stdin.readline()


class SayBatch(keras.callbacks.Callback):
    def on_test_batch_end(self, batch, logs=None):
        say("eval_batch")


def announced(function, before, after=None, only=None):
    """``function`` saying ``before`` ahead of each call (for which ``only(*args, **kwargs)`` holds) and
    ``after`` once it returned."""

    def call(*args, **kwargs):
        if only is not None and not only(*args, **kwargs):
            return function(*args, **kwargs)
        say(before)
        value = function(*args, **kwargs)
        if after:
            say(after)
        return value

    return call


def main(recipe, argv):
    compile_trainer = run_module.compile_trainer

    def compile_announced(*args, **kwargs):
        trainer = compile_trainer(*args, **kwargs)
        evaluate = trainer.evaluate

        def final_evaluate(*args, **kwargs):
            # fit's own validation passes _use_cached_eval_dataset; the run's final evaluation does not.
            if kwargs.get("_use_cached_eval_dataset"):
                return evaluate(*args, **kwargs)
            say("evaluate")
            return evaluate(*args, callbacks=[SayBatch()], **kwargs)

        trainer.evaluate = final_evaluate
        return trainer

    replace = os.replace
    names = {"model.weights.h5": "weights_in_place", "result.json": "result_in_place"}

    def replace_announced(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) in names:
            say(names[os.path.basename(os.fspath(dst))])
        return replace(src, dst, *args, **kwargs)

    os.replace = replace_announced
    run_module.compile_trainer = compile_announced
    run_module.write_final_weights = announced(run_module.write_final_weights, "weights", "weights_written")
    run_module.write_json = announced(run_module.write_json, "result", "result_written",
                                      only=lambda path, *a, **k: os.path.basename(path) == "result.json")
    run_recipe(load_recipe(recipe).main, argv)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
