"""The one-way import rule: each layer loads nothing above it (checked in a fresh interpreter per import)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LAYERS = ("models", "pretrained", "inference", "train", "deploy", "cli")
# What importing each subpackage may load of the others (besides itself and the shared top-level modules).
ALLOWED = {
    "deeplabv3p.models": set(),
    "deeplabv3p.pretrained": {"models"},
    "deeplabv3p.inference": {"models", "pretrained"},
    "deeplabv3p.train": {"models", "pretrained", "inference"},
    "deeplabv3p.deploy": {"models", "pretrained", "inference"},
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


@pytest.mark.parametrize(
    "package",
    ["deeplabv3p", "deeplabv3p.models", "deeplabv3p.pretrained", "deeplabv3p.inference", "deeplabv3p.deploy"],
)
def test_public_names_are_the_same_for_type_checkers_and_at_run_time(package):
    """The names a package imports under TYPE_CHECKING (what IDEs and mypy see) are exactly its lazily loaded
    `_EXPORTS`, from the same modules; they make its `__all__` and resolve to the defining module's object."""
    import ast
    import importlib

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert typed == module._EXPORTS
    assert sorted(set(module.__all__) - {"__version__"}) == sorted(typed)
    for name, source in typed.items():
        assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{source}"), name)


# ----- calls: no function of a lower layer calls a function of a higher one at run time ------------------------------

# Run in a fresh interpreter under sys.setprofile: every call whose caller and callee are functions of deeplabv3p
# modules in two different layers is recorded as (caller layer, callee layer, "caller -> callee"). The workload is
# what a user does with a model: create it, predict, save and reload it, reset its head, optimise it, predict again.
_CALL_TRACER = r"""
import json, sys, tempfile, threading
from pathlib import Path

LAYERS = ("models", "pretrained", "inference", "train", "deploy", "cli")
seen = {}

def layer(frame):
    name = frame.f_globals.get("__name__", "")
    parts = name.split(".")
    return (parts[1], name) if len(parts) > 2 and parts[0] == "deeplabv3p" and parts[1] in LAYERS else (None, name)

def profile(frame, event, arg):
    if event != "call" or frame.f_back is None:
        return
    callee, callee_module = layer(frame)
    caller, caller_module = layer(frame.f_back)
    if callee is not None and caller is not None and callee != caller:
        if frame.f_code.co_name in INTERFACE and isinstance(frame.f_locals.get("self"), Backend):
            return  # the pipeline running a backend through the interface it defines (deploy's segmenters)
        call = f"{caller_module}.{frame.f_back.f_code.co_name} -> {callee_module}.{frame.f_code.co_name}"
        seen.setdefault((caller, callee), set()).add(call)

import numpy as np
import deeplabv3p
import deeplabv3p.models.model
from deeplabv3p.inference.backend import Backend

INTERFACE = {name for name in vars(Backend) if not name.startswith("__") or name == "__call__"}

if sys.argv[1] == "violating":  # a network method that calls the inference layer, as models/model.py once did
    source = "def predict(self, inputs):\n    from deeplabv3p.inference.pipeline import predict\n"
    exec(source + "    return predict(self, inputs)\n", vars(deeplabv3p.models.model))
    deeplabv3p.models.model.DeepLabV3PlusNetwork.predict = deeplabv3p.models.model.predict

narrow = dict(encoder_kwargs={"channels": (8, 16, 32, 64)}, decoder_channels=16, low_level_channels=8, aux_channels=8)
image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
threading.setprofile(profile)
sys.setprofile(profile)
model = deeplabv3p.create_model("deeplabv3plus_r18_d8", num_classes=3, **narrow).eval()
with tempfile.TemporaryDirectory() as tmp:
    loaded = deeplabv3p.create_model(str(model.save_pretrained(Path(tmp) / "model"))).eval()
    if sys.argv[1] != "violating":
        import deeplabv3p.deploy
        exported = deeplabv3p.deploy.export(loaded, Path(tmp) / "m.onnx", input_size=(32, 32)).path
        deeplabv3p.deploy.load(exported).predict(image)
if sys.argv[1] == "violating":
    deeplabv3p.models.model.DeepLabV3PlusNetwork.predict(loaded, image)
else:
    loaded.predict(image)
    loaded.reset_classifier(4)
    loaded.optimize_for_inference().predict(image)
sys.setprofile(None)
threading.setprofile(None)
print(json.dumps([[caller, callee, sorted(calls)] for (caller, callee), calls in seen.items()]))
"""


def _calls_across_layers(workload: str) -> dict[tuple[str, str], list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _CALL_TRACER, workload], capture_output=True, text=True, check=True
    ).stdout
    return {(caller, callee): calls for caller, callee, calls in json.loads(out.splitlines()[-1])}


def _upward(calls: dict[tuple[str, str], list[str]]) -> list[str]:
    return sorted(
        c for (caller, callee), found in calls.items() if LAYERS.index(caller) < LAYERS.index(callee) for c in found
    )


def test_no_function_of_a_layer_calls_one_above_it():
    calls = _calls_across_layers("user")
    assert not _upward(calls), "lower layers call higher ones:\n" + "\n".join(_upward(calls))
    # The workload did cross the layers downwards, so the trace saw what it checks.
    assert {("pretrained", "models"), ("inference", "pretrained"), ("deploy", "inference")} <= set(calls)


def test_the_call_check_catches_a_network_that_calls_inference():
    upward = _upward(_calls_across_layers("violating"))
    assert "deeplabv3p.models.model.predict -> deeplabv3p.inference.pipeline.predict" in upward, upward
