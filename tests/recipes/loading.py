"""What the recipe and data tests share: where the repository is, where real datasets are (for the tests that
are about real data), and loading a recipe script as a module (recipes/ is not a package) so a test can call its
``main(argv)``.

The tests themselves run on small datasets written in the owners' formats (tests/owner_files.py, the session
fixture ``owner_data``); real copies are only an extra. Where they are, in this order:

- ``$TFVIT_TEST_SHARED_DATA``: set it to a folder that does not exist to run as on a fresh clone;
- ``$TFVIT_DATA_DIR``: the folder tfvit itself reads the owners' files from;
- ``../shared/data`` beside the repository.
"""

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _real_data():
    for variable in ("TFVIT_TEST_SHARED_DATA", "TFVIT_DATA_DIR"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser(), f"${variable}"
    return ROOT.parent / "shared" / "data", "../shared/data"


# Read once, at import: tests/data clears $TFVIT_DATA_DIR around each test so that tfvit does not see it.
REAL_DATA, REAL_DATA_ORIGIN = _real_data()


def real_dataset(name):
    """The folder of REAL_DATA that holds the real ``name`` files (the one to compare a direct read of the
    files with), or None. CIFAR-10: REAL_DATA itself (its .tar.gz or extracted folder); MNIST: its ``mnist/``
    subfolder, or REAL_DATA where the IDX files lie directly in it."""
    if name == "cifar10":
        found = (REAL_DATA / "cifar-10-python.tar.gz").is_file() or (REAL_DATA / "cifar-10-batches-py").is_dir()
        return REAL_DATA if found else None
    if name == "mnist":
        for folder in (REAL_DATA / "mnist", REAL_DATA):
            if all((folder / f).is_file() for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
                return folder
        return None
    raise ValueError(f"no real-data lookup for {name!r}")


def load_recipe(name):
    """recipes/<name>.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
