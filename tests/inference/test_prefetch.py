"""Reading ahead (a thread, or DataLoader worker processes) and batching equal-sized images: same results, in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import deeplabv3p
from deeplabv3p.inference.images import expand_inputs
from deeplabv3p.inference.prefetch import ViewSpec, prefetched


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [(48, 64), (48, 64), (48, 64), (40, 72), (48, 64)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def _batches_seen(model, call):
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        return call(), seen
    finally:
        handle.remove()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_workers_and_batches_give_the_same_results_in_order(model, folder, num_workers):
    reference, one_by_one = _batches_seen(model, lambda: model.predict(folder, return_probs=True))
    assert one_by_one == [1] * 5
    results, batches = _batches_seen(
        model, lambda: model.predict(folder, return_probs=True, batch_size=2, num_workers=num_workers)
    )
    assert batches == [2, 1, 1, 1]  # 0+1 together; 2 alone (3 has another size); 3; 4
    assert [r.name for r in results] == [r.name for r in reference]
    for a, b in zip(reference, results):
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-5)
        assert (a.labels == b.labels).mean() > 0.999
        assert b.seconds is not None and b.seconds > 0


def test_slide_and_tta_run_one_image_at_a_time(model, folder):
    _, slide = _batches_seen(model, lambda: model.predict(folder, batch_size=4, mode="slide", crop_size=48))
    assert len(slide) == 5  # one 48x64 image is 2 windows: one forward of 2 windows per image, not of 4 images
    _, tta = _batches_seen(model, lambda: model.predict(folder, batch_size=4, tta=True, tta_ratios=(1.0,)))
    assert tta == [1] * 10  # each image and its mirror


def test_an_unreadable_file_fails_at_its_turn_with_its_name(model, folder):
    (folder / "3.png").write_bytes(b"not a png")
    for workers in (0, 2):
        stream = deeplabv3p.predict_iter(model, folder, num_workers=workers)
        assert [next(stream).name for _ in range(3)] == [str(folder / f"{i}.png") for i in range(3)]
        with pytest.raises(ValueError, match=r"cannot read image file .*3\.png"):
            next(stream)


def test_views_are_the_resized_images_per_ratio(folder):
    items, _ = expand_inputs(folder / "3.png")
    (p,) = prefetched(items, ViewSpec(test_scale=(96, 64), keep_ratio=True, ratios=(0.5, 1.0)))
    assert p.size == (40, 72) and [tuple(v.shape) for v in p.views] == [(3, 27, 48), (3, 53, 96)]
    assert all(v.dtype == torch.uint8 for v in p.views)  # normalized on the network's device, not here


def test_device_tensors_cannot_go_to_worker_processes():
    image = torch.zeros(3, 40, 40, dtype=torch.uint8, device="meta")  # stands in for a GPU tensor
    items, _ = expand_inputs([image])
    with pytest.raises(ValueError, match=r"cannot take GPU tensors \(inputs\[0\] is on meta\)"):
        next(prefetched(items, ViewSpec(None, True, (1.0,)), num_workers=1))


def test_reading_ahead_only_where_it_leaves_the_network_its_cores(folder, monkeypatch):
    import deeplabv3p.inference.prefetch as prefetch

    cores = len(__import__("os").sched_getaffinity(0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores)
    assert not prefetch.reads_ahead(torch.device("cpu"))  # every core computes: a reading thread steals from it
    assert prefetch.reads_ahead(torch.device("cuda"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: cores - 1)
    assert prefetch.reads_ahead(torch.device("cpu")) == (cores > 1)

    read = []
    real = prefetch.prepare
    monkeypatch.setattr(prefetch, "prepare", lambda item, i, spec, *rest: read.append(i) or real(item, i, spec, *rest))
    items, _ = expand_inputs(folder)
    stream = prefetched(items, ViewSpec(None, True, (1.0,)), read_ahead=False)
    assert next(stream).index == 0 and read == [0]  # nothing read before it is asked for
    assert [p.index for p in stream] == [1, 2, 3, 4] and read == [0, 1, 2, 3, 4]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_pinned_prefetch_to_the_gpu(model, folder, num_workers, monkeypatch):
    """On CUDA the prepared images are in pinned memory (asynchronous copies), read by a thread or worker processes,
    and the results are the CPU's."""
    import deeplabv3p.inference.pipeline as pipeline

    reference = model.predict(folder, return_probs=True)
    pinned = []
    real = pipeline.prefetched

    def recording(*args, **kwargs):
        for p in real(*args, **kwargs):
            pinned.extend(v.is_pinned() for v in p.views)
            yield p

    monkeypatch.setattr(pipeline, "prefetched", recording)
    try:
        model.cuda()
        results = model.predict(folder, return_probs=True, batch_size=2, num_workers=num_workers)
    finally:
        model.cpu()
    assert len(pinned) == 5 and all(pinned)
    assert [r.name for r in results] == [r.name for r in reference]
    for a, b in zip(reference, results):
        assert np.abs(b.probs - a.probs).max() < 1e-3  # TF32 convolutions may differ from the CPU's fp32
        assert (a.labels == b.labels).mean() > 0.99
