"""A progress bar for the perturbation methods, shown only when the work is long.

RISE and occlusion run one forward pass per (image, mask or window): 2000 or 361 per image, seconds on a
small model, many minutes for a ViT-B at 224 on a CPU. A bar on every call would flood loops that explain
many small batches, so the bar appears only once the estimate of the remaining time, taken from the
passes done so far, exceeds ``after_seconds``; it then shows the passes done and Keras's time estimate.
"""

import time

import keras


class PassProgress:
    """Count forward passes towards ``total``; show a keras Progbar once the work looks longer than
    ``after_seconds`` (and ``keras.config.is_interactive_logging_enabled()``)."""

    def __init__(self, total, name, after_seconds=10.0):
        self.total, self.name, self.after_seconds = int(total), name, after_seconds
        self.done, self.bar, self.began = 0, None, time.perf_counter()

    def advance(self, passes):
        self.done += int(passes)
        if self.bar is None:
            elapsed = time.perf_counter() - self.began
            remaining = elapsed / max(self.done, 1) * (self.total - self.done)
            if remaining <= self.after_seconds or not keras.config.is_interactive_logging_enabled():
                return
            print(f"{self.name}: {self.total} forward passes", flush=True)
            self.bar = keras.utils.Progbar(self.total, unit_name="pass")
        self.bar.update(self.done, finalize=self.done >= self.total)
