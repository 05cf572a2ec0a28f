"""Distributed training: two CPU processes (gloo) under torchrun, and the sharded, resumable sample stream."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from nets import tiny_model
from torch import nn

import deeplabv3p
from deeplabv3p import train as training
from deeplabv3p.distributed import convert_sync_batchnorm
from deeplabv3p.train.datasets import SegmentationDataset
from deeplabv3p.train.loader import TrainSampler

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[3])
    from nets import tiny_model
    from deeplabv3p import train as training
    from deeplabv3p.train.datasets import SegmentationDataset

    out = sys.argv[2]
    train_set, val_set = SegmentationDataset(sys.argv[1], "train"), SegmentationDataset(sys.argv[1], "val")
    model = tiny_model()
    result = training.fit(model, train_set, val_set, out=out, iters=3, batch_size=2, crop_size=(48, 48),
                          num_workers=0, progress=False, log_interval=1, val_interval=3)
    digest = hashlib.sha256(b"".join(v.float().numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    rank = int(__import__("os").environ["RANK"])
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"digest": digest, "initialized_after": dist.is_initialized(), "val": result.history}, f)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_train_one_model(tmp_path: Path) -> None:
    from deeplabv3p.train.demo import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", num_train=6, num_val=3, size=64, seed=2)
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(script), str(data), str(out), str(Path(__file__).parents[1]),
    ]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # parameters and BatchNorm statistics agree across ranks
    assert not ranks[0]["initialized_after"]  # fit set up the process group and took it down again
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "loss" in r] == [1, 2, 3]  # rank 0 alone logs
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["iter_000003", "latest"]
    config = json.loads((out / "train_config.json").read_text())
    assert config["world_size"] == 2
    # validation was sharded over the ranks and summed: it equals one process evaluating every image
    final = deeplabv3p.create_model(str(out / "checkpoints" / "iter_000003"))
    single = training.evaluate(final, SegmentationDataset(data, "val"), progress=False)
    assert ranks[0]["val"] == ranks[1]["val"]
    assert ranks[0]["val"][-1]["mIoU"] == pytest.approx(single["mIoU"])
    assert ranks[0]["val"][-1]["aAcc"] == pytest.approx(single["aAcc"])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_sample_stream_is_sharded_and_resumable(world_size: int) -> None:
    n = 7
    per_rank = -(-n // world_size)
    streams = []
    for rank in range(world_size):
        it = iter(TrainSampler(n, seed=3, rank=rank, world_size=world_size))
        streams.append([next(it) for _ in range(3 * per_rank)])
    for epoch in range(3):
        seen = [idx for s in streams for idx, _ in s[epoch * per_rank : (epoch + 1) * per_rank]]
        assert set(seen) == set(range(n))  # every epoch covers the dataset (padded by repetition)
    seeds = [seed for s in streams for _, seed in s]
    assert len(set(seeds)) == len(seeds)  # every sample of the stream gets its own augmentation seed
    epoch_orders = [[idx for idx, _ in streams[0][e * per_rank : (e + 1) * per_rank]] for e in range(3)]
    assert epoch_orders[0] != epoch_orders[1] or epoch_orders[1] != epoch_orders[2]  # reshuffled per epoch
    for start in (0, 2, per_rank + 1):
        resumed = iter(TrainSampler(n, seed=3, rank=0, world_size=world_size, start=start))
        assert [next(resumed) for _ in range(4)] == streams[0][start : start + 4]


@pytest.mark.parametrize("encoder", ["resnet18", "efficientnet_b0"])  # plain BatchNorm2d / timm BatchNormAct2d
def test_sync_batchnorm_swap_is_undone_with_trained_state(encoder: str) -> None:

    model = tiny_model(encoder=encoder, encoder_kwargs={}).eval()
    x = torch.randn(1, 3, 64, 64)
    before_types = [type(m) for m in model.modules()]
    with torch.no_grad():
        expected = model(x)
    restore = convert_sync_batchnorm(model)
    synced = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert synced and not any(type(m) is nn.BatchNorm2d for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(model(x), expected)  # activations of BatchNormAct layers survive the swap
        synced[0].running_mean.add_(1.0)  # "training" through the synchronised layer...
    restore()
    assert [type(m) for m in model.modules()] == before_types
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(first_bn.running_mean, synced[0].running_mean)  # ...is what the restored layer holds
