"""The fine-tuning loop's CUDA paths: fp16 AMP with its GradScaler and bf16 autocast, each with a validation on the GPU.

Marked ``gpu`` (run with ``pytest -m gpu``; `benchmarks/gpu.sh` does) and skipped without CUDA.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from nets import tiny_model
from train_helpers import TINY, one_thread  # noqa: F401  (one_thread: autouse fixture)

from deeplabv3p import train as training
from deeplabv3p.train.checkpoint import read_training_state
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.demo import make_synthetic_dataset

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_train=6, num_val=3, size=64, seed=1)


def _fit_on_cuda(data_root: Path, out: Path, **options: object) -> tuple[torch.nn.Module, dict, list[dict]]:
    """Train the tiny network on the GPU with a validation at the end; the model (weights before), the result's
    last validation and the logged records."""
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_set, val_set = SegmentationDataset(data_root, "train"), SegmentationDataset(data_root, "val")
    settings = {**TINY, "iters": 4, "log_interval": 1, "val_interval": 4, "checkpoint_interval": 4, **options}
    result = training.fit(model, train_set, val_set, out=out, device="cuda", **settings)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v.cpu())]
    assert changed, "training on the GPU changed no weight"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert result.metrics is not None and math.isfinite(result.metrics["mIoU"])
    return model, result.metrics, records


def test_fp16_amp_steps_through_its_gradient_scaler(data_root: Path, tmp_path: Path) -> None:
    _, _, records = _fit_on_cuda(data_root, tmp_path, amp="fp16")
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    state = read_training_state(tmp_path / "checkpoints" / "iter_000004")[1]
    assert state["config"]["amp"] == "fp16"
    scale = state["scaler"]["scale"]  # a disabled scaler saves no state: the key says it ran
    assert math.isfinite(scale) and scale >= 1.0


def test_bf16_autocast_trains_in_channels_last(data_root: Path, tmp_path: Path) -> None:
    _, _, records = _fit_on_cuda(data_root, tmp_path, amp="bf16", channels_last=True)
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    state = read_training_state(tmp_path / "checkpoints" / "iter_000004")[1]
    assert state["config"]["amp"] == "bf16" and not state.get("scaler")  # bf16 needs no loss scaling
