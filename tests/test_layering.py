"""The one-way import rule: each layer loads nothing above it (checked in a fresh interpreter per import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LAYERS = ("models", "pretrained", "inference", "train", "cli")
# What importing each subpackage may load of the others (besides itself and the shared top-level modules).
ALLOWED = {
    "deeplabv3p.models": set(),
    "deeplabv3p.pretrained": {"models"},
    "deeplabv3p.inference": {"models", "pretrained"},
    "deeplabv3p.train": {"models", "pretrained", "inference"},
    "deeplabv3p": set(),
}
TRAINING_ONLY_MODULES = ("torchvision.transforms.v2",)


def _loaded_after_import(module: str) -> dict[str, list[str]]:
    code = (
        f"import json, sys, {module}\n"
        "print(json.dumps({'deeplabv3p': sorted(m for m in sys.modules if m.startswith('deeplabv3p.')),"
        " 'other': sorted(m for m in sys.modules if not m.startswith('deeplabv3p'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _layers(modules: list[str]) -> set[str]:
    return {m.split(".")[1] for m in modules if m.split(".")[1] in LAYERS}


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_a_layer_loads_nothing_above_it(module):
    loaded = _loaded_after_import(module)
    own = {module.split(".")[1]} if "." in module else set()
    extra = _layers(loaded["deeplabv3p"]) - own - ALLOWED[module]
    assert not extra, f"importing {module} loaded {sorted(extra)}: {loaded['deeplabv3p']}"
    if module != "deeplabv3p.train":
        assert not [m for m in TRAINING_ONLY_MODULES if m in loaded["other"]]


def test_training_package_loads_on_first_use():
    code = (
        "import sys, deeplabv3p\n"
        "assert 'deeplabv3p.train' not in sys.modules\n"
        "deeplabv3p.SegmentationDataset\n"
        "assert 'deeplabv3p.train' in sys.modules\n"
        "print(deeplabv3p.train.fit.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "deeplabv3p.train.trainer"


def test_every_public_name_resolves():
    import deeplabv3p

    for name in deeplabv3p.__all__:
        assert getattr(deeplabv3p, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        deeplabv3p.nope  # noqa: B018


def test_public_names_are_the_same_for_type_checkers_and_at_run_time():
    """The names imported under TYPE_CHECKING in deeplabv3p/__init__.py (what IDEs and mypy see) are exactly the
    lazily loaded `_EXPORTS`, from the same modules, and make `__all__` with `__version__`."""
    import ast
    import importlib

    import deeplabv3p

    tree = ast.parse(Path(deeplabv3p.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {
        alias.name: "deeplabv3p." + node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert typed == deeplabv3p._EXPORTS
    assert sorted(deeplabv3p.__all__) == sorted(["__version__", *typed])
    for name, module in typed.items():
        assert getattr(deeplabv3p, name) is getattr(importlib.import_module(module), name)
