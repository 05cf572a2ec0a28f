"""One rule for the bands a model reads from a TIFF or raster (`deeplabv3p.inference.bands`): `predict` on a TIFF
file and folder prediction into PNG label maps read the weights' trained bands (``pretrained_cfg.bands``) unless
the caller chooses others, as `predict_raster` does; a file lacking one of them is an error naming it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import tiny_model
from PIL import Image
from train_helpers import one_thread  # noqa: F401  (autouse fixture)

pytest.importorskip("rasterio")

from raster_helpers import synthetic_pixels, write_geotiff

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p.inference.writer import write_predictions

K = 3


def _trained_on(bands: tuple[int, ...]) -> deeplabv3p.DeepLabV3Plus:
    """An RGB model whose weights record that they were trained on raster `bands`, its classifier drawn anew so
    that its labels follow the input's bands (the tiny network's own predicts one class everywhere)."""
    model = tiny_model(num_classes=K).eval()
    with torch.no_grad():
        torch.manual_seed(0)
        model.classifier.conv.weight.normal_(0.0, 1.0)
        model.classifier.conv.bias.zero_()
    model.pretrained_cfg = model.pretrained_cfg.replace(bands=bands)
    return model


def _network_input(model: torch.nn.Module, inputs: object, **kwargs: object) -> torch.Tensor:
    """What the network is fed for one image (normalised), through ``model.predict``."""
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        model.predict(inputs, resize=False, **kwargs)
    finally:
        handle.remove()
    (x,) = seen
    return x


def _hwc(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(pixels, 0, -1))


@pytest.mark.parametrize(
    ("stored", "trained", "read"),
    [
        (3, (3, 2, 1), [2, 1, 0]),  # BGR stored: PIL decodes it, then the weights' order is taken
        (4, (4, 3, 2), [3, 2, 1]),  # RGB + NIR: tifffile decodes it; was refused suggesting in_chans=4
        (3, (2,), [1, 1, 1]),  # one band for an RGB model: gray repeated, as the raster reader does
    ],
)
def test_predict_on_a_tiff_reads_the_bands_the_weights_were_trained_on(tmp_path, stored, trained, read):
    model = _trained_on(trained)
    pixels = synthetic_pixels(40, 48, stored, "uint8", seed=1)
    source = write_geotiff(tmp_path / "scene.tif", pixels)
    expected = _network_input(model, _hwc(pixels[read]))  # the bands the weights were trained on, as an array
    torch.testing.assert_close(_network_input(model, source), expected, rtol=0, atol=0)
    torch.testing.assert_close(_network_input(model, str(source)), expected, rtol=0, atol=0)
    chosen = _network_input(model, source, bands=(1, 2, 3))  # the caller's choice wins over the weights'
    torch.testing.assert_close(chosen, _network_input(model, _hwc(pixels[:3])), rtol=0, atol=0)


def test_folder_prediction_to_png_reads_the_trained_bands_as_predict_raster_does(tmp_path, capsys):
    model = _trained_on((3, 2, 1))
    folder = tmp_path / "tifs"
    folder.mkdir()
    scenes = {f"s{i}": synthetic_pixels(32, 40, 3, "uint8", seed=i) for i in range(2)}
    for name, pixels in scenes.items():
        write_geotiff(folder / f"{name}.tif", pixels)
    write_predictions(model, folder, tmp_path / "pngs", resize=False)
    for name, pixels in scenes.items():
        expected = model.predict(_hwc(pixels[[2, 1, 0]]), resize=False).labels
        assert (expected != model.predict(_hwc(pixels), resize=False).labels).any()  # the band order shows
        np.testing.assert_array_equal(np.array(Image.open(tmp_path / "pngs" / f"{name}.png")), expected)

    saved = model.save_pretrained(tmp_path / "model")  # the command line, through the saved config.json
    args = ["predict", str(folder), "--model", str(saved), "--no-progress", "--no-resize"]
    assert cli.main([*args, "--out", str(tmp_path / "cli"), "--bands", "1,2,3"]) == 0
    expected = model.predict(_hwc(scenes["s0"]), resize=False).labels  # --bands now applies to PNG output too
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "cli" / "s0.png")), expected)
    capsys.readouterr()


def test_a_tiff_without_a_trained_band_names_the_file_the_bands_and_how_to_choose(tmp_path):
    model = _trained_on((3, 2, 1))
    two = write_geotiff(tmp_path / "two.tif", synthetic_pixels(24, 24, 2, "uint8", seed=2))
    words = r"two\.tif: reading bands \(3, 2, 1\) asks for band 3 but the raster has 2.*trained on bands.*--bands"
    with pytest.raises(ValueError, match=words):
        model.predict(two)
    with pytest.raises(ValueError, match=words):  # a folder into PNG label maps: the same rule and error
        write_predictions(model, tmp_path, tmp_path / "out")
    assert model.predict(two, bands=(1,)).labels.shape == (24, 24)  # choosing bands it has reads it


def test_chosen_bands_apply_to_tiffs_only_and_must_fit_the_model(tmp_path):
    model = tiny_model(num_classes=K).eval()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: bands=\(3, 2, 1\) selects bands of TIFF files"):
        model.predict(tmp_path / "rgb.png", bands=(3, 2, 1))
    with pytest.raises(ValueError, match=r"bands=\(3, 2, 1\) selects bands of TIFF files.*a\[\.\.\., \[3, 2, 1\]\]"):
        model.predict(np.zeros((8, 8, 3), np.uint8), bands=(3, 2, 1))
    with pytest.raises(ValueError, match=r"bands=\(1, 2\) selects 2 band\(s\) but a model of in_chans=3 reads 1 or 3"):
        model.predict(tmp_path / "rgb.png", bands=(1, 2))
    trained = _trained_on((3, 2, 1))  # the weights' bands do not apply to arrays: read as given
    assert trained.predict(np.zeros((16, 16, 3), np.uint8), resize=False).labels.shape == (16, 16)


def test_calibration_and_sizing_read_the_bands_predict_reads(tmp_path):
    """INT8 calibration, held-out checks and --backend's sizing read images as predict does: the trained bands."""
    from deeplabv3p.cli.predict import _network_size
    from deeplabv3p.deploy.calibration import calibration_inputs
    from deeplabv3p.inference.images import ImageItem
    from deeplabv3p.inference.options import PredictOptions

    model = _trained_on((4, 3, 2))
    path = write_geotiff(tmp_path / "nir.tif", synthetic_pixels(40, 56, 4, "uint8", seed=5))  # 4th band not alpha
    (calibrated,) = calibration_inputs(model, [path], options=PredictOptions(resize=False))
    torch.testing.assert_close(torch.from_numpy(calibrated), _network_input(model, path))
    item = ImageItem(path, str(path))
    assert _network_size(model, PredictOptions(resize=False, mode="whole"), item) == (40, 56)


def test_an_overlay_is_drawn_from_the_bands_the_model_read(tmp_path):
    model = _trained_on((4, 3, 2))
    pixels = synthetic_pixels(24, 32, 5, "uint8", seed=3)
    source = write_geotiff(tmp_path / "stack.tif", pixels)
    result = model.predict(source, resize=False)
    shown = np.array(result.overlay(alpha=0.0))  # alpha 0: the image alone
    np.testing.assert_array_equal(shown, _hwc(pixels[[3, 2, 1]]))
    chosen = model.predict(source, resize=False, bands=(5, 1, 2)).overlay(alpha=0.0)
    np.testing.assert_array_equal(np.array(chosen), _hwc(pixels[[4, 0, 1]]))
    other = result.overlay(alpha=0.0, image=_hwc(pixels[:3]))  # an image given is drawn as given
    np.testing.assert_array_equal(np.array(other), _hwc(pixels[:3]))
