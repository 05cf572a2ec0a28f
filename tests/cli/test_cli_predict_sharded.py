"""``torchrun -m deeplabv3p predict`` with 2 gloo CPU processes: a crash midway, then a rerun that finishes the job.

The outputs must be byte-identical to one process's, every input written exactly once over both runs, and the
manifest merged by rank 0 must hold every input once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli_predict import NARROW_ARGS

from deeplabv3p.cli import main

# Runs the CLI in a torchrun process, recording every file it saves; rank 1 dies after its CRASH-th save.
SCRIPT = textwrap.dedent(
    """
    import os, sys
    from deeplabv3p.inference.result import SegmentationResult

    log, crash, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    rank = os.environ["RANK"]
    real_save, saved = SegmentationResult.save, []

    def save(self, path, *a, **k):
        out = real_save(self, path, *a, **k)
        with open(f"{log}.rank{rank}", "a") as f:
            f.write(f"{path}\\n")
        saved.append(path)
        if crash and rank == "1" and len(saved) == crash:
            os._exit(3)  # killed midway: after a file, before its manifest record
        return out

    SegmentationResult.save = save
    from deeplabv3p.cli import main
    sys.exit(main(args))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(script: Path, log: Path, crash: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), str(script), str(log), str(crash), *args,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two torchrun launches of 2 processes: ~45 s
def test_sharded_predict_resumes_after_a_crash(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, size=(36 + 2 * i, 52, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    single = tmp_path / "single"
    assert main(["predict", str(images), *NARROW_ARGS, "--out", str(single), "--no-progress"]) == 0

    script, log, out = tmp_path / "run.py", tmp_path / "saved", tmp_path / "sharded"
    script.write_text(SCRIPT)
    args = ["predict", str(images), *NARROW_ARGS, "--out", str(out), "--device", "cpu", "--no-progress"]
    crashed = _torchrun(script, log, 2, args)
    assert crashed.returncode != 0
    assert len((tmp_path / "saved.rank1").read_text().splitlines()) == 2  # rank 1 got 2 of its 3 images done
    assert not (out / "manifest.jsonl").exists()  # nobody merged
    finished = _torchrun(script, log, 0, args)
    assert finished.returncode == 0, finished.stderr[-3000:]

    written = [line for r in (0, 1) for line in (tmp_path / f"saved.rank{r}").read_text().splitlines()]
    assert sorted(Path(p).name for p in written) == [f"im{i}.png" for i in range(7)]  # each exactly once
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == {p.name: p.read_bytes() for p in single.glob("*.png")}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single.iterdir())  # no part or temp files
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [Path(r["input"]).name for r in records] == [f"im{i}.png" for i in range(7)]
    assert [r["size"] for r in records] == [[36 + 2 * i, 52] for i in range(7)]
    assert sum(r["seconds"] is None for r in records) == 1  # rank 1's second image: saved, then killed
    assert {r["rank"] for r in records if r["seconds"] is not None} == {0, 1}
