"""Reading rasters window by window (deeplabv3p.inference.rasters): the same network input as the in-memory path,
band selection, nodata masks, georeference, and the errors for a missing extra and bad bands."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("rasterio")

from raster_helpers import synthetic_pixels, write_geotiff

from deeplabv3p.inference.images import ImageSpec, read_image
from deeplabv3p.inference.rasters import open_raster, require_rasterio


def _hwc(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(pixels, 0, -1))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("tiled", [True, False])
def test_window_reads_as_the_in_memory_image(tmp_path, dtype, tiled):
    pixels = synthetic_pixels(37, 45, 3, dtype)
    path = write_geotiff(tmp_path / "a.tif", pixels, tiled=tiled)
    with open_raster(path) as raster:
        whole = raster.read_all()
        window = raster.read(5, 30, 7, 40)
    expected = read_image(_hwc(pixels))
    assert whole.valid is None
    assert whole.pixels.dtype == expected.dtype
    torch.testing.assert_close(whole.pixels, expected, rtol=0, atol=0)
    torch.testing.assert_close(window.pixels, expected[:, 5:30, 7:40], rtol=0, atol=0)


def test_multiband_uint16_keeps_every_bit_for_a_multiband_model(tmp_path):
    pixels = synthetic_pixels(20, 24, 4, "uint16")
    path = write_geotiff(tmp_path / "nir.tif", pixels)
    with open_raster(path, in_chans=4) as raster:
        got = raster.read_all().pixels
    torch.testing.assert_close(got, read_image(_hwc(pixels), ImageSpec(4)), rtol=0, atol=0)
    assert got.dtype == torch.float32 and not torch.equal(got.round(), got)  # not the high byte only


def test_band_selection_is_one_based_and_ordered(tmp_path):
    pixels = synthetic_pixels(16, 20, 4)
    path = write_geotiff(tmp_path / "four.tif", pixels)
    with open_raster(path, bands=(4, 3, 2)) as raster:
        got = raster.read_all().pixels
    torch.testing.assert_close(got, torch.from_numpy(pixels[[3, 2, 1]]), rtol=0, atol=0)


def test_gray_raster_is_repeated_for_an_rgb_model_and_alpha_dropped(tmp_path):
    gray = synthetic_pixels(12, 14, 1)
    with open_raster(write_geotiff(tmp_path / "gray.tif", gray)) as raster:
        assert torch.equal(raster.read_all().pixels, torch.from_numpy(gray).expand(3, -1, -1))
    rgba = synthetic_pixels(12, 14, 4)
    rgba[3] = 255
    rgba[3, :4] = 0  # transparent top rows: nodata through GDAL's mask band
    with open_raster(write_geotiff(tmp_path / "rgba.tif", rgba, alpha=True)) as raster:
        window = raster.read_all()
    assert raster.bands == (1, 2, 3)
    assert window.valid is not None and not window.valid[:4].any() and window.valid[4:].all()


def test_nodata_value_masks_pixels_where_every_band_is_nodata(tmp_path):
    pixels = synthetic_pixels(16, 16, 3, "float32")
    pixels[:, :3] = -9999.0  # fill value far outside [0, 1]: must not trip the float range check
    pixels[0, 5, 5] = -9999.0  # one band only: still data
    path = write_geotiff(tmp_path / "nd.tif", pixels, nodata=-9999.0)
    with open_raster(path) as raster:
        window = raster.read_all()
    assert window.valid is not None
    assert not window.valid[:3].any() and window.valid[3:].all()
    assert float(window.pixels[:, :3].abs().max()) == 0.0


def test_nodata_given_by_the_caller_replaces_the_rasters(tmp_path):
    pixels = synthetic_pixels(10, 10, 3)
    pixels[:, 0, 0] = 7
    path = write_geotiff(tmp_path / "x.tif", pixels)
    with open_raster(path, nodata=7) as raster:
        valid = raster.read_all().valid
    assert valid is not None and valid.sum() == 99 and not valid[0, 0]


def test_grid_round_trips_crs_and_transform(tmp_path):
    path = write_geotiff(tmp_path / "g.tif", synthetic_pixels(8, 9, 3))
    with open_raster(path) as raster:
        grid = raster.grid
    assert (grid.height, grid.width) == (8, 9) and grid.georeferenced and "UTM zone 32N" in (grid.crs or "")
    assert grid.transform == (0.5, 0.0, 500000.0, 0.0, -0.5, 5500000.0)
    plain = write_geotiff(tmp_path / "plain.tif", synthetic_pixels(8, 9, 3), crs=None, tiled=False)
    with open_raster(plain) as raster:
        assert not raster.grid.georeferenced


@pytest.mark.parametrize(
    ("bands", "kind", "words"),
    [
        ((4, 3, 9), ValueError, "band 9 but the raster has 4"),
        ((0, 1, 2), ValueError, "start at 1"),
        ((1, 1, 2), ValueError, "twice"),
        ("4,3,2", TypeError, "band numbers"),
        ((1, 2), ValueError, "reads 1 or 3 bands"),
    ],
)
def test_bad_bands_are_refused_naming_the_file_or_argument(tmp_path, bands, kind, words):
    path = write_geotiff(tmp_path / "four.tif", synthetic_pixels(8, 8, 4))
    with pytest.raises(kind, match=words):
        open_raster(path, bands=bands)


def test_four_bands_without_alpha_are_refused_for_an_rgb_model(tmp_path):
    path = write_geotiff(tmp_path / "rgbn.tif", synthetic_pixels(8, 8, 4))
    with pytest.raises(ValueError, match=r"rgbn.tif.*--bands 1,2,3"):
        open_raster(path)


def test_unsupported_dtype_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "i16.tif", synthetic_pixels(8, 8, 3, "float32").astype(np.int16))
    with pytest.raises(TypeError, match=r"i16.tif.*int16"):
        open_raster(path)


def test_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"deeplabv3p\[geo\]"):
        require_rasterio("reading the raster x.tif")
    with pytest.raises(ImportError, match=r"x.tif.*deeplabv3p\[geo\]"):
        open_raster(tmp_path / "x.tif")
