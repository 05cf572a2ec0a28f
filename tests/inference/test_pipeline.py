"""predict(): mmseg's whole / slide / ms+flip semantics, output sizes, execution rules and results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from parity import arrays, build, case_info, model_kwargs, rel_err
from PIL import Image

import deeplabv3p
from deeplabv3p import SegmentationResult, create_model
from deeplabv3p.inference.pipeline import (
    normalize,
    preprocess,
    resolve_settings,
    segment_logits,
    slide_inference,
    slide_windows,
    whole_inference,
)
from deeplabv3p.inference.resize import rescale_size, resize_image
from deeplabv3p.inference.result import default_palette

RNG = np.random.default_rng(0)
SLIDE_CASE = "r18_v1b_d8_slide"


@pytest.fixture(scope="module")
def golden_model():
    """The narrow R-18b network of the slide golden, with mmseg's weights."""
    return build(SLIDE_CASE)


@pytest.fixture
def model(golden_model):
    """The golden network with fresh (weights-free) test-time settings for each test."""
    golden_model.pretrained_cfg = deeplabv3p.PretrainedCfg(architecture="deeplabv3plus_r18b_d8", num_classes=3)
    golden_model.eval()
    return golden_model


def _image(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --- mmseg parity -------------------------------------------------------------------------------------------


def test_slide_reproduces_mmseg_golden(model):
    golden, window = arrays(SLIDE_CASE), case_info(SLIDE_CASE)["slide"]
    with torch.inference_mode():
        for window_batch_size in (1, 4, 64):
            out = slide_inference(model, golden["input"], window["crop_size"], window["stride"], window_batch_size)
            assert rel_err(out, golden["logits"]) < 1e-5
        assert rel_err(whole_inference(model, golden["input"]), golden["logits_whole"]) < 1e-5
    # The two goldens differ by far more than the tolerance, so the slide test can tell them apart.
    assert rel_err(golden["logits"], golden["logits_whole"]) > 0.1


def test_predict_from_rgb_uint8_reproduces_mmseg():
    """Raw RGB image -> normalization -> whole inference -> labels, against mmseg's output for that image."""
    model, golden = build("r18_v1c_d8"), arrays("r18_v1c_d8")
    res = model.predict(golden["image_rgb_uint8"][0].numpy(), return_probs=True)
    assert rel_err(torch.from_numpy(res.probs), golden["logits"].softmax(1)[0]) < 1e-5
    np.testing.assert_array_equal(res.labels, golden["logits"][0].argmax(0).numpy())


def test_final_resize_uses_the_weights_align_corners():
    """The Cityscapes 769 rows resize logits with align_corners=True; predict must follow the model's setting."""
    model = build("r50_v1b_d8_align_corners")
    assert model.config.align_corners
    model.pretrained_cfg = model.pretrained_cfg.replace(test_scale=(100, 72))
    image = _image(45, 61)
    res = model.predict(image, return_probs=True)
    size = rescale_size(45, 61, (100, 72))
    x = normalize(
        resize_image(torch.from_numpy(image).permute(2, 0, 1), size),
        model.pretrained_cfg.mean,
        model.pretrained_cfg.std,
    )
    with torch.inference_mode():
        logits = model(x)
    for align_corners, agrees in ((True, True), (False, False)):
        probs = F.interpolate(logits, size=(45, 61), mode="bilinear", align_corners=align_corners).softmax(1)[0]
        assert (np.abs(res.probs - probs.numpy()).max() < 1e-5) == agrees


def test_slide_windows_follow_mmseg():
    windows = slide_windows(200, 300, (128, 128), (85, 85))
    assert len(windows) == 2 * 4  # rows (200 - 128 + 84) // 85 + 1, columns (300 - 128 + 84) // 85 + 1
    assert windows[:2] == [(0, 128, 0, 128), (0, 128, 85, 213)]
    assert windows[3] == (0, 128, 172, 300)  # past the right border: moved back to a full crop
    assert windows[-1] == (72, 200, 172, 300)
    assert len(slide_windows(1025, 2049, (769, 769), (513, 513))) == 2 * 4  # the Cityscapes 769 example
    assert slide_windows(50, 60, (128, 128), (85, 85)) == [(0, 50, 0, 60)]  # smaller than the crop: one window
    cover = np.zeros((200, 300), int)
    for y1, y2, x1, x2 in windows:
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1


def test_slide_equals_whole_when_one_window_covers_the_image(model):
    x = normalize(torch.from_numpy(_image(72, 100)).permute(2, 0, 1), (123.675, 116.28, 103.53), (58.4, 57.1, 57.4))
    with torch.inference_mode():
        slide = slide_inference(model, x, (128, 128), (85, 85))
        whole = whole_inference(model, x)
        several = slide_inference(model, x, (64, 64), (40, 40))
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)
    assert (several - whole).abs().max() > 1e-3  # several windows do change the result


def test_slide_predict_matches_stitched_logits(model):
    """predict(mode='slide') on an image equals slide_inference on that image's normalized input."""
    image = _image(200, 300)
    res = model.predict(image, mode="slide", crop_size=128, stride=85, return_probs=True)
    x = normalize(torch.from_numpy(image).permute(2, 0, 1), model.pretrained_cfg.mean, model.pretrained_cfg.std)
    with torch.inference_mode():
        logits = slide_inference(model, x, 128, 85)
    np.testing.assert_allclose(res.probs, logits.softmax(1)[0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(res.labels, logits[0].argmax(0).numpy())


def test_normalize_one_image_or_a_padded_batch():
    """One normalisation for testing and training: (x - mean) / std, and a padded batch's padding back to 0."""
    mean, std = (100.0, 110.0, 120.0), (50.0, 55.0, 60.0)
    images = torch.from_numpy(RNG.integers(0, 256, size=(2, 3, 5, 7), dtype=np.uint8))
    expected = (images.float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    single = normalize(images[0], mean, std)
    assert single.shape == (1, 3, 5, 7) and single.dtype == torch.float32
    torch.testing.assert_close(single[0], expected[0], rtol=0, atol=0)
    batch = normalize(images, mean, std, sizes=torch.tensor([[5, 7], [3, 4]]))
    torch.testing.assert_close(batch[0], expected[0], rtol=0, atol=0)
    torch.testing.assert_close(batch[1, :, :3, :4], expected[1, :, :3, :4], rtol=0, atol=0)
    assert not batch[1, :, 3:].any() and not batch[1, :, :, 4:].any()


def test_preprocessing_is_mmcv_rescale_then_normalize(model):
    """The network sees the OpenCV-exact keep-ratio rescale to the test scale, normalized with the weights' stats."""
    model.pretrained_cfg = model.pretrained_cfg.replace(test_scale=(96, 64), mean=(100.0, 110.0, 120.0))
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        image = _image(50, 70)
        res = model.predict(image, return_probs=True)
    finally:
        handle.remove()
    size = rescale_size(50, 70, (96, 64))  # short side 64 -> 64 x int(70 * 1.28 + 0.5) = 90
    assert size == (64, 90)
    expected = normalize(
        resize_image(torch.from_numpy(image).permute(2, 0, 1), size), (100.0, 110.0, 120.0), model.pretrained_cfg.std
    )
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)
    with torch.inference_mode():
        logits = F.interpolate(model(expected), size=(50, 70), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(res.probs, logits.softmax(1)[0].numpy(), atol=1e-6)
    # turning the resize off feeds the image as is
    seen.clear()
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    try:
        model.predict(image, resize=False)
    finally:
        handle.remove()
    assert tuple(seen[0][-2:]) == (50, 70)


def test_tta_scales_multiply_the_test_scale_and_flip(model):
    model.pretrained_cfg = model.pretrained_cfg.replace(test_scale=(96, 64))
    shapes = []
    handle = model.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape[-2:])))
    try:
        res = model.predict(_image(50, 70), tta=True, tta_ratios=(0.5, 1.0, 1.5), return_probs=True)
    finally:
        handle.remove()
    expected = [rescale_size(50, 70, (int(96 * r), int(64 * r))) for r in (0.5, 1.0, 1.5)]
    assert shapes == [s for s in expected for _ in range(2)]  # each scale, plain then flipped
    assert res.probs.shape == (3, 50, 70)
    np.testing.assert_allclose(res.probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(res.labels, res.probs.argmax(0))


def test_tta_is_the_mean_of_flipped_back_softmax(model):
    image = torch.from_numpy(_image(40, 56)).permute(2, 0, 1)
    settings = resolve_settings(model)
    with torch.inference_mode():
        plain = segment_logits(model, image, settings).softmax(1)
        mirrored = segment_logits(model, image.flip(-1), settings).softmax(1).flip(-1)
    res = model.predict(image, tta=True, tta_ratios=(1.0,), return_probs=True)
    np.testing.assert_allclose(res.probs, ((plain + mirrored) / 2)[0].numpy(), atol=1e-6)


def test_flip_tta_on_a_mirror_symmetric_input_is_mirror_symmetric(model):
    half = _image(48, 32)
    image = np.concatenate([half, half[:, ::-1]], axis=1)  # symmetric about the vertical axis
    x = normalize(torch.from_numpy(image).permute(2, 0, 1), model.pretrained_cfg.mean, model.pretrained_cfg.std)
    with torch.inference_mode():
        plain = whole_inference(model, x)
    assert (plain - plain.flip(-1)).abs().max() > 1e-3  # the network alone is not symmetric
    res = model.predict(image, tta=True, tta_ratios=(0.75, 1.0, 1.5), return_probs=True)
    np.testing.assert_allclose(res.probs, res.probs[:, :, ::-1], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"test_scale": (128, 96)},
        {"test_scale": (40, 30)},
        {"mode": "slide", "crop_size": 64, "stride": 40},
        {"mode": "slide", "crop_size": (48, 64), "test_scale": (150, 100)},
        {"tta": True, "tta_ratios": (0.75, 1.25)},
        {"tta": True, "mode": "slide", "crop_size": 64, "test_scale": (100, 90), "tta_ratios": (0.5, 1.0)},
    ],
)
def test_output_is_always_at_the_original_size(model, kwargs):
    sizes = [(61, 83), (97, 45), (64, 64)]
    results = model.predict([_image(*s) for s in sizes], return_probs=True, **kwargs)
    assert [r.size for r in results] == sizes
    for r in results:
        assert r.labels.dtype == np.int64 and r.probs.shape == (3, *r.size)
        assert r.labels.min() >= 0 and r.labels.max() < 3


def test_weights_test_settings_are_the_defaults(model):
    model.pretrained_cfg = model.pretrained_cfg.replace(
        test_mode="slide", slide_crop=(64, 64), slide_stride=(33, 33), crop_size=(64, 64), test_scale=(120, 90)
    )
    test = resolve_settings(model).test
    assert (test.mode, test.window, test.stride, test.scale) == (
        "slide",
        (64, 64),
        (33, 33),
        (120, 90),
    )
    assert resolve_settings(model, mode="whole").test.window is None
    model.pretrained_cfg = model.pretrained_cfg.replace(test_mode="whole", slide_crop=None, slide_stride=None)
    assert resolve_settings(model, mode="slide").test.stride == (43, 43)  # the training crop, stride 2/3 rounded up
    assert resolve_settings(model, resize=False).test.scale is None


# --- inputs and results -------------------------------------------------------------------------------------


def test_every_input_form_gives_the_same_labels(model, tmp_path):
    image = _image(50, 66)
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    reference = model.predict(image).labels
    singles = [path, str(path), Image.fromarray(image), chw, chw.float() / 255]
    for form in singles:
        res = model.predict(form)
        assert isinstance(res, SegmentationResult)
        np.testing.assert_array_equal(res.labels, reference, err_msg=str(type(form)))
    batches = [(chw[None], 1), (np.stack([image, image]), 2), ([image, path], 2), (tmp_path, 1)]
    for batch, count in batches:
        results = model.predict(batch)
        assert isinstance(results, list) and len(results) == count
        for res in results:
            np.testing.assert_array_equal(res.labels, reference)


def test_predict_iter_streams_lazily(model, tmp_path, monkeypatch):
    for i in range(3):
        Image.fromarray(_image(40, 40)).save(tmp_path / f"{i}.png")
    reads = []
    from deeplabv3p.inference import images

    real = images.read_image
    monkeypatch.setattr(images, "read_image", lambda src, *args: reads.append(src) or real(src, *args))
    stream = deeplabv3p.predict_iter(model, tmp_path)
    assert reads == []  # nothing read before the first result is asked for
    first = next(stream)
    assert first.name.endswith("0.png") and len(reads) <= 2  # the current image and at most one ahead
    assert len(list(stream)) == 2


def test_classes_and_palette_come_from_the_weights(model):
    res = model.predict(_image(40, 40))
    assert res.classes == ("class_0", "class_1", "class_2")
    np.testing.assert_array_equal(res.palette, default_palette(3))
    model.pretrained_cfg = model.pretrained_cfg.replace(
        classes=("sky", "road", "car"), palette=((1, 2, 3), (4, 5, 6), (7, 8, 9))
    )
    res = model.predict(_image(40, 40))
    assert res.classes == ("sky", "road", "car")
    assert res.palette.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert set(res.present_classes()) <= {"sky", "road", "car"}


def test_default_palette_is_distinct():
    palette = default_palette(300)
    assert palette.shape == (300, 3) and palette.dtype == np.uint8
    assert palette[1].tolist() == [128, 0, 0] and palette[2].tolist() == [0, 128, 0]
    assert len({tuple(c) for c in palette[:256]}) == 256


def test_colorize_overlay_and_save(model, tmp_path):
    image = _image(30, 44)
    res = model.predict(image)
    colors = np.asarray(res.colorize())
    np.testing.assert_array_equal(colors, res.palette[res.labels])
    np.testing.assert_array_equal(np.asarray(res.overlay(alpha=0.0)), image)
    np.testing.assert_array_equal(np.asarray(res.overlay(alpha=1.0)), colors)
    half = np.asarray(res.overlay(alpha=0.5)).astype(int)
    assert np.abs(half - (image.astype(int) + colors) / 2).max() <= 0.5
    saved = res.save(tmp_path / "mask.png")
    with Image.open(saved) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), res.labels)
        assert im.getpalette()[:9] == res.palette.reshape(-1).tolist()
    res.save(tmp_path / "over.jpg", kind="overlay")
    res.save(tmp_path / "color.png", kind="color")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["color.png", "mask.png", "over.jpg"]  # no temp files left
    with pytest.raises(ValueError, match="PNG"):
        res.save(tmp_path / "mask.jpg")
    with pytest.raises(ValueError, match="kind"):
        res.save(tmp_path / "x.png", kind="probs")
    with pytest.raises(ValueError, match="alpha"):
        res.overlay(alpha=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        res.save(tmp_path / "missing" / "mask.png")


def test_many_classes_save_as_16_bit(tmp_path):
    labels = np.array([[0, 299], [256, 5]], dtype=np.int64)
    res = SegmentationResult(labels=labels, classes=tuple(map(str, range(300))), palette=default_palette(300))
    with Image.open(res.save(tmp_path / "m.png")) as im:
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), labels)


# --- execution -----------------------------------------------------------------------------------------------


def test_training_mode_is_restored_and_inference_mode_used(model):
    modes = []
    handle = model.register_forward_pre_hook(
        lambda m, args: modes.append((m.training, torch.is_inference_mode_enabled()))
    )
    try:
        model.train()
        model.predict(_image(40, 40))
        assert model.training and modes == [(False, True)]
        with pytest.raises(ValueError):
            model.predict(_image(4, 4), resize=False)  # too small: fails inside the network
        assert model.training
        model.eval()
        model.predict(_image(40, 40))
        assert not model.training
    finally:
        handle.remove()
        model.eval()


def test_reduced_precision_and_channels_last(model, golden_model):
    image = _image(64, 80)
    reference = model.predict(image, return_probs=True)
    bf16 = model.predict(image, dtype=torch.bfloat16, return_probs=True)
    assert bf16.probs.dtype == np.float32
    assert np.abs(bf16.probs - reference.probs).max() < 0.1
    assert (bf16.labels == reference.labels).mean() > 0.9
    with pytest.raises(ValueError, match="float16 needs a GPU"):
        model.predict(image, dtype=torch.float16)
    with pytest.raises(ValueError, match="dtype"):
        model.predict(image, dtype=torch.int8)
    try:
        last = model.predict(image, channels_last=True, return_probs=True)
        np.testing.assert_allclose(last.probs, reference.probs, atol=1e-5)
    finally:
        golden_model.to(memory_format=torch.contiguous_format)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_model_device(model):
    image = _image(64, 80)
    reference = model.predict(image, return_probs=True)
    try:
        model.cuda()
        for dtype in (None, torch.float16, torch.bfloat16):
            res = model.predict(torch.from_numpy(image).permute(2, 0, 1).cuda(), dtype=dtype, return_probs=True)
            assert np.abs(res.probs - reference.probs).max() < (1e-4 if dtype is None else 0.1)
    finally:
        model.cpu()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "sliding"}, "mode must be one of"),
        ({"mode": "slide"}, "needs a window"),
        ({"crop_size": 64}, "apply to mode='slide'"),
        ({"mode": "slide", "crop_size": (64, 0)}, "crop_size must be"),
        ({"tta_ratios": (1.0,)}, "apply when tta=True"),
        ({"tta": True, "tta_ratios": ()}, "tta_ratios must be"),
        ({"tta": True, "tta_ratios": (1.0, -0.5)}, r"tta_ratios entries must be a finite number > 0, got -0\.5"),
        ({"resize": False, "test_scale": (64, 64)}, "one or the other"),
        ({"test_scale": (64,)}, "test_scale must be"),
        ({"window_batch_size": 0}, "window_batch_size"),
    ],
)
def test_bad_arguments_fail_clearly(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.predict(_image(40, 40), **kwargs)


def test_too_small_image_names_the_input(model):
    with pytest.raises(ValueError, match=r"inputs\[1\] \(5x6, HxW\).*at least 8x8"):
        model.predict([_image(40, 40), _image(5, 6)], resize=False)
    with pytest.raises(TypeError, match=r"unsupported image type"):
        model.predict({"image": 1})


def test_a_4_band_model_refuses_an_rgb_image_naming_both_counts():
    arch, kwargs = model_kwargs(SLIDE_CASE)
    model = create_model(arch, **{**kwargs, "in_chans": 4})
    with pytest.raises(ValueError, match="has 3 bands but the model takes in_chans=4"):
        model.predict(_image(40, 40))


def test_preprocess_ratio_without_test_scale_rescales_the_image(model):
    settings = resolve_settings(model, tta=True)
    x = preprocess(torch.from_numpy(_image(40, 60)).permute(2, 0, 1), settings, ratio=0.5)
    assert tuple(x.shape) == (1, 3, 20, 30)


# --- whole mode's pixel budget ------------------------------------------------------------------------------


def test_whole_mode_over_the_pixel_budget_slides_with_the_training_crop(model, caplog):
    """A whole-mode image over ``max_whole_pixels`` is slid over with the weights' training crop (stride 2/3), as
    predict(mode='slide') would, and a log line says so; at or under the budget it stays one pass."""
    model.pretrained_cfg = model.pretrained_cfg.replace(crop_size=(64, 64))  # whole mode, no slide window
    image = _image(100, 150)
    slide = model.predict(image, mode="slide", crop_size=64, return_probs=True)
    whole = model.predict(image, max_whole_pixels=0, return_probs=True)
    assert np.abs(slide.probs - whole.probs).max() > 1e-3  # the two modes differ on this image
    with caplog.at_level("INFO", logger="deeplabv3p"):
        budgeted = model.predict(image, max_whole_pixels=100 * 150 - 1, return_probs=True)
    np.testing.assert_allclose(budgeted.probs, slide.probs, atol=1e-6)
    assert "network input 100x150 (H x W, 15000 pixels) is over whole mode's pixel budget of 14999" in caplog.text
    assert "window 64x64, stride 43x43" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="deeplabv3p"):
        at_budget = model.predict(image, max_whole_pixels=100 * 150, return_probs=True)
    np.testing.assert_allclose(at_budget.probs, whole.probs, atol=1e-6)
    assert "pixel budget" not in caplog.text


def test_the_pixel_budget_slides_with_the_weights_window_and_applies_per_tta_view(model):
    """The weights' own slide window and stride come first; with TTA each view is checked on its own size."""
    model.pretrained_cfg = model.pretrained_cfg.replace(crop_size=(64, 64), slide_crop=(48, 48), slide_stride=(40, 40))
    settings = resolve_settings(model, max_whole_pixels=5000)
    assert settings.test.mode == "whole" and settings.budget_slide == ((48, 48), (40, 40))
    image = _image(60, 90)  # 5400 pixels: over; its 0.5 view (30x45) is under
    slide = model.predict(image, mode="slide", return_probs=True)
    budgeted = model.predict(image, max_whole_pixels=5000, return_probs=True)
    np.testing.assert_allclose(budgeted.probs, slide.probs, atol=1e-6)
    kw = dict(tta=True, tta_ratios=(0.5,), tta_flip=False)
    np.testing.assert_allclose(
        model.predict(image, max_whole_pixels=5000, **kw).labels, model.predict(image, max_whole_pixels=0, **kw).labels
    )


def test_the_default_pixel_budget_keeps_the_zoo_whole():
    """The default budget never changes a zoo tag's whole-mode test (mmseg parity), even at TTA ratio 1.75."""
    import itertools

    from deeplabv3p.inference.options import PredictOptions
    from deeplabv3p.inference.resize import scaled_test_size
    from deeplabv3p.pretrained.test_settings import WHOLE_MAX_PIXELS, over_budget

    assert PredictOptions().max_whole_pixels == WHOLE_MAX_PIXELS
    largest = 0
    for name in deeplabv3p.list_pretrained():
        test = deeplabv3p.get_pretrained_cfg(name).test
        if test.mode == "whole":
            assert test.scale is not None, name  # a zoo tag always rescales
            sizes = ((4000, 6000), (1024, 2048), (512, 2048), (999, 999))
            for ratio, size in itertools.product(test.tta_ratios, sizes):
                h, w = scaled_test_size(*size, test.scale, test.keep_ratio, ratio)  # every image fills the scale
                largest = max(largest, h * w)
    assert largest > 0 and not over_budget(largest, 1, WHOLE_MAX_PIXELS)
