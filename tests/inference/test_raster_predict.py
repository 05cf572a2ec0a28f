"""Streamed raster prediction (deeplabv3p.inference.raster_predict): labels equal to in-memory slide predict, the
georeferenced GeoTIFF written (CRS, transform, palette, names, probabilities), nodata kept, resume after a kill."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rasterio")

import rasterio
from raster_helpers import synthetic_pixels, write_geotiff

from deeplabv3p.inference.pipeline import predict, slide_inference, slide_windows
from deeplabv3p.inference.raster_blend import CarryBand, RowBlend
from deeplabv3p.inference.raster_predict import RasterOptions, predict_raster
from deeplabv3p.inference.raster_writer import JOB_TAG
from deeplabv3p.inference.strips import StripStore, strips_folder

WINDOW = dict(crop_size=32, stride=20)
TILE = 16  # strips end on 16-row tiles, so these small rasters are written in several strips


def _hwc(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(pixels, 0, -1))


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.tags(), src


@pytest.mark.parametrize(("height", "width", "batch"), [(70, 90, 4), (45, 61, 3)])
def test_labels_equal_in_memory_slide_predict(model, tmp_path, height, width, batch):
    pixels = synthetic_pixels(height, width, 3)
    source = write_geotiff(tmp_path / "in.tif", pixels)
    out = tmp_path / "labels.tif"
    summary = predict_raster(model, source, out, raster=RasterOptions(tile=TILE), window_batch_size=batch, **WINDOW)
    expected = predict(model, _hwc(pixels), mode="slide", resize=False, window_batch_size=batch, **WINDOW)
    labels, profile, _, _ = _read(out)
    assert len(np.unique(expected.labels)) > 1  # the network tells pixels apart, so the comparison means something
    np.testing.assert_array_equal(labels[0], expected.labels)
    assert summary.strips >= (3 if height > 64 else 1) and summary.written == (out,)
    assert not strips_folder(out).exists()
    assert profile["tiled"] and profile["compress"] == "deflate" and profile["dtype"] == "uint8"


def test_output_keeps_georeference_palette_and_names(model, tmp_path):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(40, 50, 3))
    out = tmp_path / "labels.tif"
    predict_raster(model, source, out, raster=RasterOptions(tile=TILE, probs="classes"), **WINDOW)
    with rasterio.open(source) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.height, dst.width) == (src.height, src.width) and dst.nodata == 255
        colormap = dst.colormap(1)
        names = json.loads(dst.tags()["CLASS_NAMES"])
    reference = predict(model, np.zeros((8, 8, 3), np.uint8))
    assert names == list(reference.classes) and len(names) == 3
    palette = reference.palette
    assert [colormap[i][:3] for i in range(3)] == [tuple(int(v) for v in palette[i]) for i in range(3)]
    probs, profile, _, _ = _read(tmp_path / "labels_probs.tif")
    assert probs.shape == (3, 40, 50) and profile["dtype"] == "uint8"
    expected = predict(model, _hwc(synthetic_pixels(40, 50, 3)), mode="slide", resize=False, return_probs=True,
                       **WINDOW)  # fmt: skip
    np.testing.assert_allclose(probs / 255.0, expected.probs, atol=0.5 / 255 + 1e-6)


def test_cog_layout_on_request(model, tmp_path):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(40, 40, 3))
    out = tmp_path / "labels.tif"
    predict_raster(model, source, out, raster=RasterOptions(cog=True, tile=TILE), **WINDOW)
    plain = tmp_path / "plain.tif"
    predict_raster(model, source, plain, raster=RasterOptions(tile=TILE), **WINDOW)
    with rasterio.open(out) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG" and cog.colormap(1)[0]
    np.testing.assert_array_equal(_read(out)[0], _read(plain)[0])


def test_uint16_four_band_striped_raster_with_band_selection(model, tmp_path):
    pixels = synthetic_pixels(40, 44, 4, "uint16")
    source = write_geotiff(tmp_path / "in.tif", pixels, tiled=False)
    out = tmp_path / "labels.tif"
    predict_raster(model, source, out, raster=RasterOptions(tile=TILE), bands=(4, 3, 2), **WINDOW)
    expected = predict(model, _hwc(pixels[[3, 2, 1]]), mode="slide", resize=False, **WINDOW)
    np.testing.assert_array_equal(_read(out)[0][0], expected.labels)


def test_nodata_stays_nodata_and_takes_no_part(model, tmp_path):
    pixels = synthetic_pixels(64, 64, 3)
    pixels[:, :, :40] = 0  # a wide nodata border: whole windows of it are skipped
    source = write_geotiff(tmp_path / "in.tif", pixels, nodata=0)
    out = tmp_path / "labels.tif"
    predict_raster(model, source, out, raster=RasterOptions(tile=TILE), **WINDOW)
    labels = _read(out)[0][0]
    assert (labels[:, :40] == 255).all() and (labels[:, 40:] != 255).all()
    # Nodata enters the network as the mean (0 once normalized): the same labels as an image whose border is the
    # mean, so its values (here 0, elsewhere -9999) make no difference.
    filled = pixels.astype(np.float32)
    filled[:, :, :40] = np.asarray(model.pretrained_cfg.mean if model.pretrained_cfg else (0,) * 3).reshape(3, 1, 1)
    expected = predict(model, _hwc(filled / 255.0), mode="slide", resize=False, **WINDOW)
    agree = (labels[:, 40:] == expected.labels[:, 40:]).mean()
    assert agree > 0.99  # float rounding of mean / 255 * 255 may flip a tie


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_non_georeferenced_tiff_is_written_without_crs(model, tmp_path, caplog):
    source = write_geotiff(tmp_path / "plain.tif", synthetic_pixels(30, 30, 3), crs=None)
    out = tmp_path / "labels.tif"
    with caplog.at_level("WARNING", logger="deeplabv3p"):
        summary = predict_raster(model, source, out, **WINDOW)
    assert not summary.georeferenced and "no georeference" in caplog.text
    with rasterio.open(out) as dst:
        assert dst.crs is None and (dst.height, dst.width) == (30, 30)


def test_killed_run_resumes_at_first_unfinished_strip_and_matches(model, tmp_path, monkeypatch):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(96, 36, 3))
    whole = tmp_path / "whole.tif"
    options = dict(WINDOW, window_batch_size=2)  # five strips
    predict_raster(model, source, whole, raster=RasterOptions(tile=TILE, probs="confidence"), **options)
    out = tmp_path / "labels.tif"
    real_add, calls = StripStore.add, []

    def dying_add(self, y1, y2, arrays):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append((y1, y2))
        real_add(self, y1, y2, arrays)

    monkeypatch.setattr(StripStore, "add", dying_add)
    with pytest.raises(KeyboardInterrupt):
        predict_raster(model, source, out, raster=RasterOptions(tile=TILE, probs="confidence"), **options)
    assert not out.exists() and strips_folder(out).is_dir()
    monkeypatch.setattr(StripStore, "add", real_add)
    summary = predict_raster(model, source, out, raster=RasterOptions(tile=TILE, probs="confidence"), **options)
    assert summary.resumed_rows == calls[-1][1] > 0
    for a, b in [(whole, out), (tmp_path / "whole_probs.tif", tmp_path / "labels_probs.tif")]:
        np.testing.assert_array_equal(_read(a)[0], _read(b)[0])
    # Changed settings start over rather than mixing strips of two jobs.
    monkeypatch.setattr(StripStore, "add", dying_add)
    calls.clear()
    out.unlink()
    with pytest.raises(KeyboardInterrupt):
        predict_raster(model, source, out, raster=RasterOptions(tile=TILE), **options)
    monkeypatch.setattr(StripStore, "add", real_add)
    again = predict_raster(model, source, out, raster=RasterOptions(tile=TILE), crop_size=32, stride=16)
    assert again.resumed_rows == 0


def test_a_failed_write_publishes_neither_file_and_keeps_the_strips(model, tmp_path, monkeypatch):
    from deeplabv3p.inference import raster_writer

    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(40, 36, 3))
    out = tmp_path / "labels.tif"
    real_write = raster_writer._write

    def failing_labels(path, profile, store, key, describe):
        if key == "labels":
            raise OSError(28, "No space left on device")
        real_write(path, profile, store, key, describe)

    monkeypatch.setattr(raster_writer, "_write", failing_labels)
    with pytest.raises(OSError, match="No space left"):
        predict_raster(model, source, out, raster=RasterOptions(tile=TILE, probs="classes"), **WINDOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.tif.strips", "in.tif"]  # probs not published
    monkeypatch.setattr(raster_writer, "_write", real_write)
    summary = predict_raster(model, source, out, raster=RasterOptions(tile=TILE, probs="classes"), **WINDOW)
    assert summary.resumed_rows == 40 and summary.written == (tmp_path / "labels_probs.tif", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "labels.tif", "labels_probs.tif"]


def test_complete_output_is_skipped_on_resume_only_for_the_same_job(model, tmp_path):
    """A finished raster carries its job's digest: the same job skips it; other weights or options predict it again
    (before, any finished output was skipped, keeping the labels of the old weights)."""
    import copy

    torch = pytest.importorskip("torch")
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(20, 20, 3))
    out = tmp_path / "labels.tif"
    predict_raster(model, source, out, raster=RasterOptions(cog=True), **WINDOW)
    assert len(_read(out)[2][JOB_TAG]) == 64  # the COG copy keeps the tag
    assert predict_raster(model, source, out, raster=RasterOptions(cog=True), **WINDOW).written == ()
    assert predict_raster(model, source, out, resume=False, **WINDOW).written == (out,)
    assert predict_raster(model, source, out, **WINDOW).written == ()
    assert predict_raster(model, source, out, raster=RasterOptions(cog=True), **WINDOW).written == (out,)  # layout
    assert predict_raster(model, source, out, crop_size=32, stride=16).written == (out,)
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        retrained.classifier.conv.bias.data.copy_(torch.arange(float(model.num_classes)) * 100)  # class 4 wins
    assert predict_raster(retrained, source, out, crop_size=32, stride=16).written == (out,)
    assert (_read(out)[0] == model.num_classes - 1).all()


def _killed_after_first_strip(model, source, out, monkeypatch, **kwargs) -> None:
    """A run of `predict_raster` killed once its first strip is stored (its strips stay for a rerun)."""
    real_add = StripStore.add

    def dying_add(self, y1, y2, arrays):
        if self.done:
            raise KeyboardInterrupt("killed")
        real_add(self, y1, y2, arrays)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(StripStore, "add", dying_add)
        predict_raster(model, source, out, raster=RasterOptions(tile=TILE), **WINDOW, **kwargs)
    assert strips_folder(out).is_dir()


def test_a_precision_change_starts_over(model, tmp_path, monkeypatch):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(64, 36, 3))
    out = tmp_path / "labels.tif"
    _killed_after_first_strip(model, source, out, monkeypatch, dtype="float32")
    summary = predict_raster(model, source, out, raster=RasterOptions(tile=TILE), dtype="bfloat16", **WINDOW)
    assert summary.resumed_rows == 0


def test_a_backend_without_identity_never_resumes(model, tmp_path, caplog):
    from deeplabv3p.inference.backend import Backend, TorchBackend

    class Wrapped(Backend):  # a user's backend that does not say what its weights are
        def __init__(self) -> None:
            self.inner = TorchBackend(model)
            self.config, self.pretrained_cfg, self.device = model.config, model.pretrained_cfg, self.inner.device

        def __call__(self, x):
            return self.inner(x)

    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(20, 20, 3))
    out = tmp_path / "labels.tif"
    assert predict_raster(Wrapped(), source, out, **WINDOW).written == (out,)
    with caplog.at_level("WARNING", logger="deeplabv3p"):
        assert predict_raster(Wrapped(), source, out, **WINDOW).written == (out,)
    assert "predicted from the start" in caplog.text


def test_staging_folders_of_killed_writers_are_removed(model, tmp_path):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(20, 20, 3))
    stale = tmp_path / ".labels.tif.999999999-0123abcd.incomplete"  # no process 999999999
    stale.mkdir()
    (stale / "labels.tif").write_bytes(b"half")
    predict_raster(model, source, tmp_path / "labels.tif", **WINDOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "labels.tif"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(tta=True), "tta"),
        (dict(mode="whole"), "slide windows"),
        (dict(test_scale=(64, 64)), "own resolution"),
    ],
)
def test_options_that_do_not_apply_are_refused(model, tmp_path, kwargs, words):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(20, 20, 3))
    with pytest.raises(ValueError, match=words):
        predict_raster(model, source, tmp_path / "o.tif", **kwargs)


def test_bad_output_paths_are_refused_before_work(model, tmp_path):
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(20, 20, 3))
    with pytest.raises(ValueError, match=r"\.tif or \.tiff"):
        predict_raster(model, source, tmp_path / "o.png")
    with pytest.raises(ValueError, match="overwrite the input"):
        predict_raster(model, source, source)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_raster(model, source, tmp_path / "missing" / "o.tif")


@pytest.mark.parametrize(
    ("height", "width", "crop", "stride", "top"),
    [(70, 90, 32, 20, 0), (64, 50, 16, 16, 0), (83, 41, 30, 11, 40), (20, 20, 32, 20, 0)],
)
def test_row_blend_equals_slide_inference(height, width, crop, stride, top):
    """Row by row, labels finished as soon as no later window touches them: mmseg's canvas / count, exactly."""
    torch = pytest.importorskip("torch")
    x = torch.randn(1, 5, height, width, generator=torch.Generator().manual_seed(height))

    def forward(crops):
        return torch.tanh(crops * 3) + crops.mean(dim=(2, 3), keepdim=True)  # depends on the whole window

    expected = slide_inference(forward, x, crop, stride).argmax(dim=1)[0].numpy()
    windows = slide_windows(height, width, (crop, crop), (stride, stride))
    blend = RowBlend(windows, height, width, 5, torch.device("cpu"), top=top)
    got = []
    for k, (y1, y2, x1, x2) in enumerate(windows):
        following = windows[k + 1] if k + 1 < len(windows) else None
        next_x1 = following[2] if following is not None and following[:2] == (y1, y2) else width
        blend.add((y1, y2, x1, x2), forward(x[:, :, y1:y2, x1:x2])[0], None, next_x1)
        finished = blend.finished()
        if finished > blend.top:
            got.append(blend.take(finished)[0])
    labels = np.concatenate(got)
    assert labels.shape == (height - top, width)
    np.testing.assert_array_equal(labels, expected[top:])


def test_carry_band_round_trips_column_ranges_bit_for_bit(tmp_path):
    """The carried sums go through a file and come back unchanged, in any split of the columns; reading past the
    columns written is an error, not zeros."""
    torch = pytest.importorskip("torch")
    sums = torch.randn(3, 7, 50, generator=torch.Generator().manual_seed(0)) * 1e3
    band = CarryBand(3, 7, 50, tmp_path)
    for x0, x1 in [(0, 13), (13, 14), (14, 50)]:
        band.write(x0, sums[:, :, x0:x1])
    for x0, x1 in [(0, 20), (20, 21), (21, 50)]:
        assert torch.equal(band.read(x0, x1, torch.device("cpu")), sums[:, :, x0:x1])
    band.close()
    partial = CarryBand(3, 7, 50, tmp_path)
    partial.write(0, sums[:, :, :10])
    with pytest.raises(OSError, match="columns 10:50 were not all written"):
        partial.read(10, 50, torch.device("cpu"))
    partial.close()
    assert list(tmp_path.iterdir()) == []  # unnamed temporary files: nothing left behind
    empty = CarryBand(3, 0, 50, tmp_path)
    assert empty.read(5, 9, torch.device("cpu")).shape == (3, 0, 4)


def test_new_weights_of_the_same_architecture_start_over_instead_of_resuming(model, tmp_path, monkeypatch):
    """Resuming is keyed on the weights' values, not their description: strips of other weights are not reused."""
    import copy

    torch = pytest.importorskip("torch")
    source = write_geotiff(tmp_path / "in.tif", synthetic_pixels(64, 36, 3))
    out = tmp_path / "labels.tif"
    _killed_after_first_strip(model, source, out, monkeypatch)
    assert predict_raster(model, source, out, raster=RasterOptions(tile=TILE), **WINDOW).resumed_rows > 0
    out.unlink()
    _killed_after_first_strip(model, source, out, monkeypatch)
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        next(retrained.parameters()).mul_(1.5)  # same architecture and metadata, other values
    assert repr(retrained.pretrained_cfg) == repr(model.pretrained_cfg)
    assert predict_raster(retrained, source, out, raster=RasterOptions(tile=TILE), **WINDOW).resumed_rows == 0


def test_a_full_disk_under_the_carried_sums_names_the_folder_and_size(tmp_path):
    torch = pytest.importorskip("torch")
    band = CarryBand(3, 4, 100, tmp_path)

    class FullDisk:
        def seek(self, offset):
            pass

        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    band._file = FullDisk()
    with pytest.raises(OSError, match=r"in '.*test_a_full_disk.*' \(No space left on device\): they need 1 MiB") as e:
        band.write(0, torch.zeros(3, 4, 10))
    assert e.value.errno == 28
