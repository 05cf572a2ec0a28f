"""One rule for an image sample: the training loader, fit's validation and `evaluate` read a dataset's images
alike (floats on the 0..255 scale), and the dataset attributes come from one protocol with one set of defaults."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
import torch
from nets import tiny_model
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

from deeplabv3p import train as training
from deeplabv3p.train.samples import DatasetInfo, SegmentationData, dataset_info

K = 5  # classes of tiny_model()


class FloatPairs(torch.utils.data.Dataset):
    """Four 40x40 samples as (float32 (3, H, W) tensor, int64 (H, W) mask), the image on the 0..255 scale, or on
    the 0..1 scale with ``unit=True``."""

    num_classes = K

    def __init__(self, unit: bool = False) -> None:
        self.unit = unit

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(index)
        image = torch.randint(0, 256, (3, 40, 40), generator=g).float()
        mask = torch.randint(0, K, (40, 40), generator=g)
        return (image / 255 if self.unit else image), mask


def test_a_float_0_255_dataset_trains_and_validates(tmp_path):
    data = FloatPairs()
    result = training.fit(tiny_model(), data, data, out=tmp_path / "run", **{**TINY, "iters": 2})
    assert result.iterations == 2 and result.metrics is not None and len(result.history) == 2
    assert result.best_path is not None and (result.best_path / "metrics.json").is_file()
    again = training.evaluate(tiny_model(), data, progress=False)
    assert set(again) >= {"aAcc", "mIoU", "mAcc"}


def test_a_float_0_1_dataset_is_refused_alike_by_training_and_validation(tmp_path):
    unit = FloatPairs(unit=True)
    errors = {}
    with pytest.raises(ValueError) as info:
        training.fit(tiny_model(), unit, out=tmp_path / "a", **TINY)
    errors["training"] = str(info.value)
    with pytest.raises(ValueError) as info:
        training.fit(tiny_model(), FloatPairs(), unit, out=tmp_path / "b", **TINY)
    errors["validation"] = str(info.value)
    with pytest.raises(ValueError) as info:
        training.evaluate(tiny_model(), unit, progress=False)
    errors["evaluation"] = str(info.value)
    rules = set()
    for role, message in errors.items():
        name, rule = message.split(": ", 1)
        assert name == f"{role} sample 0", message
        rules.add(rule)
    assert len(rules) == 1, errors  # the same rule, word for word, whoever reads the sample
    assert "looks like the 0..1 scale" in rules.pop()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # before the first iteration


def test_dataset_info_reads_the_protocol_with_one_set_of_defaults():
    protocol = set(typing.get_type_hints(SegmentationData))
    assert protocol == {f.name for f in fields(DatasetInfo)} - {"stored"}
    model = tiny_model()
    model.pretrained_cfg = model.pretrained_cfg.replace(ignore_index=7)
    info = dataset_info(FloatPairs(), model)
    assert (info.ignore_index, info.num_classes, info.in_chans) == (7, K, 3)  # the weights' ignore index
    assert (info.classes, info.name, info.transforms, info.stored) == ((), "custom", None, False)
