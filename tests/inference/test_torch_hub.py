"""hubconf.py: one torch.hub entry point per registered architecture, its docstring, dependencies, and loading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.hub
from parity import rel_err
from zoo_helpers import GOLDEN_ARCH, GOLDEN_NAME, GOLDEN_PTH, GOLDEN_TAG, TOL, golden_arrays, register_golden

import deeplabv3p
from deeplabv3p.inference.torch_hub import DEPENDENCIES

REPO = Path(__file__).parents[2]


@pytest.fixture
def hub_repo(monkeypatch: pytest.MonkeyPatch) -> str:
    """torch.hub.list/help only take a GitHub repo: answer its download step with this checkout."""
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: str(REPO))
    return "deeplabv3p/deeplabv3p"


def test_list_shows_one_entry_point_per_architecture_and_nothing_else(hub_repo):
    assert torch.hub.list(hub_repo) == sorted(deeplabv3p.list_models())


def test_entry_points_follow_the_registry(hub_repo, monkeypatch):
    register_golden(monkeypatch)
    assert GOLDEN_ARCH in torch.hub.list(hub_repo)  # generated at import, not hand-listed


def test_help_shows_the_architecture_and_its_weights(hub_repo):
    doc = torch.hub.help(hub_repo, "deeplabv3plus_r101_d8")
    assert doc.startswith("DeepLabV3+ `deeplabv3plus_r101_d8`: timm `resnet101`")
    for cfg in (deeplabv3p.get_pretrained_cfg(n) for n in deeplabv3p.list_pretrained("deeplabv3plus_r101_d8.*")):
        assert re.search(rf"{cfg.tag} .*mIoU {cfg.metrics['mIoU']:g}", doc), cfg.tag
    assert 'torch.hub.load("deeplabv3p/deeplabv3p", "deeplabv3plus_r101_d8", pretrained="cityscapes")' in doc
    assert "Published weights: none" in torch.hub.help(hub_repo, "deeplabv3plus")


def test_load_local_builds_the_weights_of_a_tag(monkeypatch):
    register_golden(monkeypatch)
    model = torch.hub.load(str(REPO), GOLDEN_ARCH, source="local", pretrained=GOLDEN_TAG, checkpoint_path=GOLDEN_PTH)
    assert isinstance(model, deeplabv3p.DeepLabV3Plus) and model.pretrained_cfg.name == GOLDEN_NAME
    with torch.inference_mode():
        assert rel_err(model.eval()(golden_arrays()["input"]), golden_arrays()["logits"]) < TOL
    untrained = torch.hub.load(str(REPO), "deeplabv3plus", source="local", encoder="resnet18", num_classes=4)
    assert untrained.num_classes == 4 and untrained.config.encoder == "resnet18"


def test_bad_arguments_of_an_entry_point_list_what_exists(monkeypatch):
    register_golden(monkeypatch)
    with pytest.raises(ValueError, match=rf"no pretrained weights '{GOLDEN_ARCH}.nope'.*{GOLDEN_TAG}"):
        torch.hub.load(str(REPO), GOLDEN_ARCH, source="local", pretrained="nope")
    with pytest.raises(TypeError, match=r"unknown argument.*'num_class'.*accepted"):
        torch.hub.load(str(REPO), GOLDEN_ARCH, source="local", num_class=3)
    # An entry point that does not exist is torch's own error, raised before any code of this repo runs:
    # torch.hub only asks dir(hubconf). torch.hub.list (above) names those that exist.
    with pytest.raises(RuntimeError, match="Cannot find callable deeplabv3plus_r999 in hubconf"):
        torch.hub.load(str(REPO), "deeplabv3plus_r999", source="local")


def test_dependencies_are_the_import_names_of_the_runtime_requirements():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in requirements}
    import_names = {"pillow": "PIL"}
    assert sorted(import_names.get(n, n) for n in names) == sorted(DEPENDENCIES)
    hubconf = (REPO / "hubconf.py").read_text()
    assert "dependencies = " in hubconf
