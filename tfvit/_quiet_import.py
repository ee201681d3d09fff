"""Import TensorFlow without its start-up log lines, honouring ``TF_CPP_MIN_LOG_LEVEL``.

Also the filter itself, ``filtered_native_stderr``, for the GPU query that logs "failed call to cuInit"
as an error on every machine without a GPU.

TensorFlow's C++ libraries log while they load, before absl's logging is initialised; absl then writes
every message to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says (tensorflow/tensorflow#100442), and each
of the two shared libraries does it once ("Could not find cuda drivers", the oneDNN notice, twice per
process). So the import runs with the process's stderr (file descriptor 2, which the C++ side writes to)
pointed at a temporary file; afterwards the lines the level would have hidden are dropped and the rest
(errors, Python warnings, anything unrecognised) are written to stderr as they came.
"""

import contextlib
import os
import re
import sys
import tempfile

# absl/glog line prefixes: "I0000 00:00:17.. 31133 port.cc:153] ..." or "2025-09-17 14:44:05.157831: I ...".
_SEVERITY = re.compile(r"^(?:([IWEF])\d{4} |\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) )")
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def min_log_level():
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: 0 (all) to 3 (fatal only); 0 when unset or unreadable."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def kept_lines(text, level):
    """The lines of captured start-up output that ``level`` lets through: a log line whose severity is below
    it is dropped (with absl's banner, which announces them); everything else stays."""
    kept = []
    for line in text.splitlines():
        if line.strip() == _ABSL_BANNER:
            if level == 0:
                kept.append(line)
            continue
        match = _SEVERITY.match(line)
        if match and _LEVELS[match.group(1) or match.group(2)] < level:
            continue
        kept.append(line)
    return kept


@contextlib.contextmanager
def filtered_native_stderr(expected=()):
    """Run the block with file descriptor 2 captured, then write back what ``TF_CPP_MIN_LOG_LEVEL`` lets
    through; at level 2 or more, lines containing one of the ``expected`` texts (messages that only say
    what the machine lacks) are dropped too."""
    level = min_log_level()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = kept_lines(captured.read().decode("utf-8", errors="replace"), level)
            if level >= 2:
                lines = [line for line in lines if not any(text in line for text in expected)]
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")


def import_tensorflow():
    """``import tensorflow`` with the start-up lines ``TF_CPP_MIN_LOG_LEVEL`` hides dropped; a no-op once
    TensorFlow is imported. Errors still show, and an import that fails raises as usual."""
    if "tensorflow" in sys.modules:
        return
    with filtered_native_stderr():
        import tensorflow  # noqa: F401
