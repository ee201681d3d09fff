"""What the recipe tests share: where the repository and its shared data are, and loading a recipe script
as a module (recipes/ is not a package) so a test can call its ``main(argv)``."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def load_recipe(name):
    """recipes/<name>.py as a fresh module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
