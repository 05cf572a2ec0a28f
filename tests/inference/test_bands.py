"""More than three bands end to end at inference: HxWxC arrays (uint8, uint16, float), multi-band TIFFs, per-band
or cycled statistics, band-count errors, slide inference on a large tile, overlays and the predict CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from nets import tiny_model
from PIL import Image
from train_helpers import one_thread  # noqa: F401  (autouse fixture)

import deeplabv3p
from deeplabv3p import cli
from deeplabv3p.inference.images import ImageSpec, decode_image, display_image, expand_inputs, read_image
from deeplabv3p.inference.pipeline import resolve_settings

RNG = np.random.default_rng(0)
BANDS16 = RNG.integers(0, 65536, size=(40, 52, 4), dtype=np.uint16)  # RGB + NIR, 16 bit
PER_BAND = {"mean": (100.0, 110.0, 120.0, 90.0), "std": (50.0, 51.0, 52.0, 40.0)}


@pytest.fixture(scope="module")
def four_band() -> deeplabv3p.DeepLabV3Plus:
    return tiny_model(num_classes=3, in_chans=4, **PER_BAND).eval()


def _network_inputs(model: torch.nn.Module, *args: object, **kwargs: object) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    try:
        model.predict(*args, **kwargs)
    finally:
        handle.remove()
    return seen


def test_multiband_values_keep_every_bit_on_the_0_255_scale():
    out = read_image(BANDS16, ImageSpec(4))
    assert out.shape == (4, 40, 52) and out.dtype == torch.float32
    expected = torch.from_numpy(BANDS16.astype(np.float32) * np.float32(255 / 65535)).permute(2, 0, 1)
    torch.testing.assert_close(out, expected)
    low = np.zeros((2, 2, 4), np.uint16)
    low[0, 0, 0] = 1  # a low-byte difference an RGB reading (high byte) would lose
    assert read_image(low, ImageSpec(4))[0, 0, 0] > 0 and read_image(low[..., :3])[0, 0, 0] == 0
    uint8 = RNG.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    assert torch.equal(read_image(uint8, ImageSpec(4)), torch.from_numpy(uint8).permute(2, 0, 1))
    assert read_image(np.full((3, 3, 5), 0.5, np.float32), ImageSpec(5)).unique().tolist() == [127.5]
    assert read_image(torch.zeros(4, 3, 3, dtype=torch.uint16), ImageSpec(4)).dtype == torch.float32


def test_predict_normalises_each_band_with_its_own_statistics(four_band):
    image = RNG.integers(0, 256, size=(40, 48, 4), dtype=np.uint8)
    (x,) = _network_inputs(four_band, image, resize=False)
    mean = torch.tensor(PER_BAND["mean"]).view(1, 4, 1, 1)
    std = torch.tensor(PER_BAND["std"]).view(1, 4, 1, 1)
    torch.testing.assert_close(x, (torch.from_numpy(image).permute(2, 0, 1)[None].float() - mean) / std)


def test_without_statistics_the_rgb_ones_are_cycled_over_the_bands():
    model = tiny_model(num_classes=3, in_chans=5)
    assert model.pretrained_cfg.mean == (123.675, 116.28, 103.53, 123.675, 116.28)
    assert model.pretrained_cfg.std == (58.395, 57.12, 57.375, 58.395, 57.12)
    gray = tiny_model(num_classes=3, in_chans=1)
    assert gray.pretrained_cfg.mean == pytest.approx(((123.675 + 116.28 + 103.53) / 3,))
    # a model built bare (no create_model) is read the same way
    bare = deeplabv3p.DeepLabV3Plus(model.config)
    assert resolve_settings(bare).mean == model.pretrained_cfg.mean


def test_statistics_of_another_length_are_a_clear_error(four_band):
    with pytest.raises(ValueError, match="mean/std have 5 values but the model takes in_chans=4"):
        tiny_model(num_classes=3, in_chans=4, mean=(100.0,) * 5, std=(50.0,) * 5)
    model = tiny_model(num_classes=3, in_chans=4)
    model.pretrained_cfg = model.pretrained_cfg.replace(mean=(1.0, 2.0), std=(1.0, 2.0))
    with pytest.raises(ValueError, match="2 values but the model takes in_chans=4"):
        model.predict(BANDS16)


@pytest.mark.parametrize(
    "in_chans, statistics, match",
    [
        (4, {"mean": (100.0, 110.0, 120.0), "std": (50.0, 51.0, 52.0)}, "mean/std have 3 values but .* in_chans=4"),
        (4, {"mean": PER_BAND["mean"]}, "mean= given without std=: give both, one value per input band"),
        (4, {"std": PER_BAND["std"]}, "std= given without mean=: give both"),
        (3, {"mean": (100.0, 110.0, 120.0)}, r"mean= given without std=: .*\(in_chans=3\)"),
        (1, {"mean": (100.0, 110.0, 120.0), "std": (50.0, 51.0, 52.0)}, "3 values but .* in_chans=1"),
    ],
)
def test_given_statistics_are_never_cycled_nor_completed(in_chans, statistics, match):
    """Statistics set on purpose have one value per band and come in pairs: three for four bands would normalise
    NIR with red's, and a mean alone would be paired with ImageNet's std (only the weights' own are spread)."""
    with pytest.raises(ValueError, match=match):
        tiny_model(num_classes=3, in_chans=in_chans, **statistics)


def test_cli_model_kwargs_statistics_of_another_length_are_refused(four_band, tmp_path, capsys):
    folder = four_band.save_pretrained(tmp_path / "model")
    Image.fromarray(BANDS16[..., :3].astype(np.uint8)).save(tmp_path / "rgb.png")
    for kwargs, match in [
        (["mean=(100,110,120)", "std=(50,51,52)"], "mean/std have 3 values but the model takes in_chans=4"),
        (["mean=(100,110,120,90)"], "mean= given without std="),
    ]:
        out = tmp_path / "out"
        args = ["predict", str(tmp_path / "rgb.png"), "--model", str(folder), "--out", str(out), "--model-kwargs"]
        assert cli.main([*args, *kwargs]) == 2
        assert match in capsys.readouterr().err
        assert not out.exists()  # refused before any work


def test_band_count_mismatch_names_both_counts(four_band, tmp_path):
    cases = [
        (BANDS16[..., :3], "has 3 bands but the model takes in_chans=4"),
        (BANDS16[..., 0], "has 1 band but the model takes in_chans=4"),
        (torch.zeros(5, 8, 8, dtype=torch.uint8), "has 5 bands but the model takes in_chans=4"),
        (np.zeros((4, 8, 9), np.uint8), "channels-last"),  # a channels-first numpy array: the hint, not a count
    ]
    for image, match in cases:
        with pytest.raises(ValueError, match=match):
            four_band.predict(image)
    png = tmp_path / "rgb.png"
    Image.fromarray(BANDS16[..., :3].astype(np.uint8)).save(png)
    with pytest.raises(ValueError, match=r"rgb\.png: the image has 3 bands but the model takes in_chans=4"):
        four_band.predict(png)
    assert expand_inputs(np.zeros((8, 8, 4), np.uint8))[0][0].read().shape == (3, 8, 8)  # RGBA, for an RGB model
    with pytest.raises(ValueError, match="1, 3 or 4 channels for an RGB model"):
        read_image(np.zeros((8, 8, 5), np.uint8))


def test_float_images_outside_0_1_are_refused(four_band):
    with pytest.raises(ValueError, match=r"\[0, 1\], got min 0 and max 1200"):
        four_band.predict(np.linspace(0, 1200, 4 * 8 * 8, dtype=np.float32).reshape(8, 8, 4))


def test_multiband_png_keeps_its_alpha_band_as_a_band(four_band, tmp_path):
    rgba = RNG.integers(0, 256, size=(20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png", ImageSpec(4)).permute(1, 2, 0).numpy(), rgba)
    assert read_image(tmp_path / "a.png").shape[0] == 3  # an RGB model drops alpha, as before


@pytest.mark.parametrize("layout", ["interleaved", "planar", "pages"])
def test_multiband_tiffs_read_the_same_in_every_layout(four_band, tmp_path, layout):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / f"{layout}.tif"
    if layout == "interleaved":
        tifffile.imwrite(path, BANDS16)
    elif layout == "planar":
        tifffile.imwrite(path, np.moveaxis(BANDS16, -1, 0), planarconfig="separate", photometric="minisblack")
    else:
        tifffile.imwrite(path, np.moveaxis(BANDS16, -1, 0), photometric="minisblack")  # one page per band
    torch.testing.assert_close(read_image(path, ImageSpec(4)), read_image(BANDS16, ImageSpec(4)))
    from_file, from_array = four_band.predict(path), four_band.predict(BANDS16)
    np.testing.assert_array_equal(from_file.labels, from_array.labels)
    assert from_file.name == str(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_page_per_band_tiff_gives_an_rgb_model_its_three_bands(tmp_path, dtype):
    """PIL reads the first page of a multi-page TIFF: an RGB model read bands [10, 10, 10] of [10, 120, 230]."""
    tifffile = pytest.importorskip("tifffile")
    values = [10, 120, 230] if dtype == np.uint8 else [1000, 30000, 60000]
    rgb = np.stack([np.full((20, 24), v, dtype) for v in values], axis=-1)
    tifffile.imwrite(tmp_path / "q.tif", np.moveaxis(rgb, -1, 0), photometric="minisblack")  # one page per band
    expected = read_image(rgb)
    assert expected[:, 0, 0].tolist() == ([10, 120, 230] if dtype == np.uint8 else [3, 117, 234])
    for spec in (ImageSpec(3), ImageSpec(3, "0..255")):
        torch.testing.assert_close(read_image(tmp_path / "q.tif", spec), expected)
    torch.testing.assert_close(display_image(tmp_path / "q.tif"), expected)
    as_stored = decode_image(tmp_path / "q.tif", ImageSpec(None))
    torch.testing.assert_close(as_stored, torch.from_numpy(rgb).permute(2, 0, 1))
    rgb_model = tiny_model(num_classes=3).eval()
    np.testing.assert_array_equal(rgb_model.predict(tmp_path / "q.tif").labels, rgb_model.predict(rgb).labels)


def test_overview_pages_are_not_bands(tmp_path):
    """A reduced-resolution page (a pyramid level, NewSubfileType 1) is not a band: PIL reads the first page."""
    tifffile = pytest.importorskip("tifffile")
    rgb = RNG.integers(0, 256, size=(16, 18, 3), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(rgb, photometric="rgb")
        tif.write(rgb[::2, ::2], photometric="rgb", subfiletype=1)
    torch.testing.assert_close(read_image(tmp_path / "pyramid.tif"), read_image(rgb))


def _rgbn_tiffs(folder, tifffile) -> dict[str, object]:
    """Four-band TIFFs whose 4th band is not declared alpha, as GDAL and rasterio write RGB + NIR, by layout."""
    rgbn = RNG.integers(0, 256, size=(20, 24, 4), dtype=np.uint8)
    writes = {
        "contig": (rgbn, {"photometric": "minisblack", "planarconfig": "contig"}),
        "rgb_unspecified": (rgbn, {"photometric": "rgb", "extrasamples": ["unspecified"]}),  # PIL read it as RGB
        "planar16": (np.moveaxis(BANDS16, -1, 0), {"photometric": "minisblack", "planarconfig": "separate"}),
        "pages": (np.moveaxis(rgbn, -1, 0), {"photometric": "minisblack"}),
    }
    paths = {}
    for name, (data, kwargs) in writes.items():
        paths[name] = folder / f"{name}.tif"
        tifffile.imwrite(paths[name], data, **kwargs)
    return paths


NOT_ALPHA = r"the TIFF has 4 bands and does not declare the 4th alpha \(RGB \+ NIR\?\).*in_chans=4"


def test_a_4_band_tiff_without_declared_alpha_is_refused_by_an_rgb_model(four_band, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb_model = tiny_model(num_classes=3).eval()
    for name, path in _rgbn_tiffs(tmp_path, tifffile).items():
        with pytest.raises(ValueError, match=rf"{name}\.tif: {NOT_ALPHA}"):
            read_image(path)
        with pytest.raises(ValueError, match=NOT_ALPHA):
            rgb_model.predict(path)
        assert read_image(path, ImageSpec(4)).shape[0] == 4  # what the error proposes works
        assert four_band.predict(path).labels.shape == read_image(path, ImageSpec(4)).shape[1:]
    two = tmp_path / "two.tif"  # gray + an undeclared band: PIL read it as gray
    tifffile.imwrite(two, BANDS16[..., :2].astype(np.uint8), photometric="minisblack", planarconfig="contig")
    with pytest.raises(ValueError, match=r"2-band image for an RGB model.*in_chans=2 for all its bands"):
        read_image(two)
    five = tmp_path / "five.tif"
    tifffile.imwrite(five, RNG.integers(0, 256, size=(5, 20, 24), dtype=np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match=r"five\.tif: cannot read a 5-band image .*in_chans=5 for all its bands"):
        rgb_model.predict(five)


def test_cli_predict_refuses_an_rgb_nir_tiff_for_an_rgb_model(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    folder = tiny_model(num_classes=3).save_pretrained(tmp_path / "rgb_model")
    path = _rgbn_tiffs(tmp_path, tifffile)["contig"]
    assert cli.main(["predict", str(path), "--model", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "contig.tif: the TIFF has 4 bands and does not declare the 4th alpha" in err and "in_chans=4" in err
    assert not list((tmp_path / "out").glob("*.png"))


@pytest.mark.parametrize("declared", ["unassalpha", "assocalpha", "default", "gray", "png"])
def test_only_a_declared_alpha_band_is_dropped(tmp_path, declared):
    tifffile = pytest.importorskip("tifffile")
    rgba = RNG.integers(1, 256, size=(20, 24, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque, so associated (premultiplied) alpha leaves the colours as they are
    path = tmp_path / ("a.png" if declared == "png" else "a.tif")
    expected = rgba[..., :3]
    if declared == "png":
        Image.fromarray(rgba, "RGBA").save(path)
    elif declared == "default":
        tifffile.imwrite(path, rgba.astype(np.uint16) * 257)  # tifffile declares a 4th sample of RGB alpha
    elif declared == "gray":
        gray_alpha = rgba[..., 2:]
        tifffile.imwrite(path, gray_alpha, photometric="minisblack", extrasamples=["unassalpha"], planarconfig="contig")
        expected = np.repeat(rgba[..., 2:3], 3, axis=-1)
    else:
        tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=[declared])
    np.testing.assert_array_equal(read_image(path).permute(1, 2, 0).numpy(), expected)


def test_tiff_axes_that_are_not_one_band_axis_are_refused(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match="at most one band axis"):
        read_image(path, ImageSpec(3 * 2))
    tifffile.imwrite(tmp_path / "int.tif", np.zeros((4, 8, 8), np.int32), photometric="minisblack")
    with pytest.raises(TypeError, match="int32 pixels"):
        read_image(tmp_path / "int.tif", ImageSpec(4))


def test_a_tiff_without_the_extra_names_it(tmp_path, monkeypatch):
    pytest.importorskip("tifffile")
    import tifffile

    tifffile.imwrite(tmp_path / "b.tif", np.moveaxis(BANDS16, -1, 0), planarconfig="separate", photometric="minisblack")
    rgb16 = np.moveaxis(BANDS16[..., :3], -1, 0)
    tifffile.imwrite(tmp_path / "b3.tif", rgb16, planarconfig="separate", photometric="minisblack")
    tifffile.imwrite(tmp_path / "pages.tif", rgb16.astype(np.uint8), photometric="minisblack")
    Image.fromarray(BANDS16[..., :3].astype(np.uint8)).save(tmp_path / "rgb.tif")
    as_rgb = read_image(tmp_path / "b3.tif")  # an RGB model: the 16-bit rule (high byte)
    np.testing.assert_array_equal(as_rgb.numpy(), rgb16 >> 8)
    monkeypatch.setitem(sys.modules, "tifffile", None)  # as if not installed: `import tifffile` raises
    with pytest.raises(ImportError, match=r'needs the optional package tifffile: pip install "deeplabv3p\[tiff\]"'):
        read_image(tmp_path / "b.tif", ImageSpec(4))
    assert read_image(tmp_path / "rgb.tif").shape == (3, 40, 52)  # 8-bit RGB TIFFs need no extra (PIL)
    with pytest.raises(ImportError, match=r"PIL cannot decode the TIFF file .*only at 8 bits.*deeplabv3p\[tiff\]"):
        read_image(tmp_path / "b3.tif")  # an RGB model, but 16-bit samples PIL would cut to 8 bits
    with pytest.raises(ImportError, match=r"3 pages of one size .*PIL reads the first only.*deeplabv3p\[tiff\]"):
        read_image(tmp_path / "pages.tif")  # PIL would give an RGB model the first page as gray


def test_the_tiff_extra_is_declared_for_users_and_ci():
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(dep.startswith("tifffile") for dep in extras["tiff"])
    assert any(dep.startswith("tifffile") for dep in extras["dev"])


def test_slide_inference_on_a_large_multiband_tile(four_band, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tile = RNG.integers(0, 65536, size=(700, 900, 4), dtype=np.uint16)
    path = tmp_path / "tile.tif"
    tifffile.imwrite(path, tile, tile=(256, 256))  # a tiled GeoTIFF-style layout
    shapes = []
    handle = four_band.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))
    try:
        result = four_band.predict(path, mode="slide", crop_size=256, stride=192, window_batch_size=2)
    finally:
        handle.remove()
    assert result.labels.shape == (700, 900)
    assert len(shapes) == 10 and all(s == (2, 4, 256, 256) for s in shapes[:-1])  # 4 x 5 windows, two at a time
    assert set(np.unique(result.labels)) <= {0, 1, 2}
    overlay = result.overlay()  # drawn from the first three bands
    assert overlay.size == (900, 700) and overlay.mode == "RGB"


def test_cli_predict_reads_multiband_tiffs(four_band, tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    folder = four_band.save_pretrained(tmp_path / "model")
    assert (
        "| input | 4 bands on the 0-255 scale, normalised with mean [100.0, 110.0" in (folder / "README.md").read_text()
    )
    (tmp_path / "in").mkdir()
    for i in range(2):
        tifffile.imwrite(tmp_path / "in" / f"scene{i}.tif", np.roll(BANDS16, i, axis=0))
    code = cli.main(
        ["predict", str(tmp_path / "in"), "--model", str(folder), "--out", str(tmp_path / "out"), "--overlay"]
    )
    assert code == 0, capsys.readouterr().err
    labels = np.asarray(Image.open(tmp_path / "out" / "scene0.png"))
    np.testing.assert_array_equal(labels, four_band.predict(BANDS16).labels)
    assert (tmp_path / "out" / "scene1_overlay.jpg").is_file()
    Image.fromarray(BANDS16[..., :3].astype(np.uint8)).save(tmp_path / "in" / "rgb.png")
    assert cli.main(["predict", str(tmp_path / "in" / "rgb.png"), "--model", str(folder), "--out", str(tmp_path)]) == 2
    assert "has 3 bands but the model takes in_chans=4" in capsys.readouterr().err


def test_worker_processes_and_batches_read_the_model_bands(four_band, tmp_path):
    """The prefetch path (DataLoader workers decoding files) reads as many bands as the model takes."""
    rgba = [RNG.integers(0, 256, size=(20, 24, 4), dtype=np.uint8) for _ in range(3)]
    for i, image in enumerate(rgba):
        Image.fromarray(image, "RGBA").save(tmp_path / f"{i}.png")  # 4 bands for a 4-band model (alpha kept)
    inline = four_band.predict(rgba, resize=False)
    seen = _network_inputs(four_band, tmp_path, resize=False, num_workers=2, batch_size=3)
    assert [x.shape[:2] for x in seen] == [(3, 4)]
    for a, b in zip(inline, four_band.predict(tmp_path, resize=False, num_workers=2, batch_size=3)):
        np.testing.assert_array_equal(a.labels, b.labels)


def test_an_exported_file_records_the_bands_and_their_statistics(four_band, tmp_path):
    """What OnnxSegmenter reads an image with (band count, per-band mean/std) is in the file's metadata."""
    onnx = pytest.importorskip("onnx")
    import json

    from deeplabv3p.deploy.metadata import KEY as META_CONFIG
    from deeplabv3p.pretrained.saved import parse_config

    path = deeplabv3p.deploy.export(four_band, tmp_path / "m.onnx", input_size=(32, 32), check=False).path
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}[META_CONFIG]
    config, cfg = parse_config(json.loads(stored), origin="test")
    assert config.in_chans == 4 and cfg.mean == PER_BAND["mean"] and cfg.std == PER_BAND["std"]
    assert resolve_settings(four_band).mean == cfg.mean
