"""`deeplabv3p.DeepLabV3Plus`: the network composed with the conveniences of the layers that own them, each method
exactly the function it wraps; the plain network works with those functions too."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from nets import narrow_model

import deeplabv3p
from deeplabv3p.inference import optimize, pipeline
from deeplabv3p.inference.mixin import PredictMixin
from deeplabv3p.models.model import DeepLabV3PlusNetwork
from deeplabv3p.pretrained import hub, saved
from deeplabv3p.pretrained.mixin import PretrainedMixin

WRAPPED = [
    (PretrainedMixin.save_pretrained, saved.save_pretrained),
    (PretrainedMixin.push_to_hub, hub.push_to_hub),
    (PredictMixin.predict, pipeline.predict),
    (PredictMixin.optimize_for_inference, optimize.optimize_for_inference),
]


@pytest.mark.parametrize(("method", "function"), WRAPPED, ids=[m.__name__ for m, _ in WRAPPED])
def test_each_method_is_the_function_it_wraps(method, function):
    """The method is the function itself (the model its first argument): one definition, nothing to drift."""
    assert method is function
    assert next(iter(inspect.signature(function).parameters)) == "model"


def test_create_model_returns_the_composed_class_and_the_network_stays_plain():
    model = narrow_model()
    assert type(model) is deeplabv3p.DeepLabV3Plus and isinstance(model, DeepLabV3PlusNetwork)
    assert isinstance(deeplabv3p.DeepLabV3Plus(model.config), DeepLabV3PlusNetwork)  # DeepLabV3Plus(config) builds
    conveniences = ("predict", "save_pretrained", "push_to_hub", "optimize_for_inference")
    assert all(hasattr(model, name) for name in conveniences)
    assert not any(hasattr(DeepLabV3PlusNetwork, name) for name in conveniences)


def test_the_plain_network_goes_through_the_same_functions(tmp_path):
    model = narrow_model(seed=2).eval()
    network = DeepLabV3PlusNetwork(model.config).eval()
    network.load_state_dict(model.state_dict())
    network.pretrained_cfg = model.pretrained_cfg
    image = torch.rand(3, 40, 48)
    assert (pipeline.predict(network, image).labels == model.predict(image).labels).all()
    folded = optimize.optimize_for_inference(network, inplace=False)
    assert type(folded) is DeepLabV3PlusNetwork and folded is not network
    reloaded = deeplabv3p.create_model(str(saved.save_pretrained(network, tmp_path / "m")))
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in network.state_dict().items())


def test_optimize_for_inference_in_place_through_the_method():
    model = narrow_model().eval()
    assert model.optimize_for_inference(inplace=True) is model  # the method lacked `inplace` before


def test_evaluate_takes_the_plain_network_and_scores_it_as_the_model(tmp_path):
    from deeplabv3p import train
    from deeplabv3p.train.demo import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_train=1, num_val=2, size=32)
    val = train.SegmentationDataset(data, "val")
    model = narrow_model(num_classes=val.num_classes, seed=4).eval()
    network = DeepLabV3PlusNetwork(model.config).eval()
    network.load_state_dict(model.state_dict())
    network.pretrained_cfg = model.pretrained_cfg
    scores = [json.dumps(train.evaluate(m, val, progress=False)) for m in (network, model)]  # NaN-safe equality
    assert scores[0] == scores[1]
