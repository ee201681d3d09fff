"""Import timm without torchvision, for the tools and tests that compare with timm (tools/benchmark_torch.py,
tests/convert, tests/training).

``import timm`` also imports its data pipeline and a few helpers that import torchvision, whose only Linux
wheels on PyPI are built against CUDA torch and fail to import beside the CPU build of torch the tests
install. So, only while timm is imported, a stand-in package answers ``from torchvision... import X`` with
placeholders that raise if used; it is removed again at once, so nothing else (torch.compile's trace rules,
for one) sees a torchvision. ViT and Swin use none of it.
"""

import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(type):
    """A class standing for any torchvision name; attribute access gives further placeholders."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision is not installed: {cls.__name__} is a stand-in.")


def _module_getattr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Placeholder(name, (), {})


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _module_getattr
        return module

    def exec_module(self, module):
        pass


def _forget_torchvision():
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def import_timm():
    """The timm module, with the stand-in if torchvision does not import. ImportError without torch or timm."""
    import torch  # noqa: F401  (ImportError here: no torch)

    if "timm" in sys.modules:
        return sys.modules["timm"]
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):  # absent, or a CUDA build beside CPU torch
        pass
    else:
        import timm

        return timm
    _forget_torchvision()  # a half-imported real torchvision
    finder = _StandIn()
    sys.meta_path.insert(0, finder)
    try:
        import timm

        return timm
    finally:
        sys.meta_path.remove(finder)
        _forget_torchvision()


def uses_stand_in():
    """Whether timm was (or would be) imported with the stand-in: torchvision does not import here."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return True
    return False
