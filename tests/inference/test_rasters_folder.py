"""A folder of rasters through write_predictions(raster=...): sharded like folder prediction, one manifest, resume;
and the 16-bit label raster of a model with more than 255 classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rasterio")

import rasterio
from raster_helpers import synthetic_pixels, write_geotiff

from deeplabv3p.inference.raster_predict import RasterOptions
from deeplabv3p.inference.raster_writer import label_dtype, write_label_raster
from deeplabv3p.inference.rasters import RasterGrid
from deeplabv3p.inference.strips import StripStore
from deeplabv3p.inference.writer import merge_manifest, write_predictions

WINDOW = dict(crop_size=32, stride=20)


def test_folder_of_rasters_sharded_over_two_processes(model, tmp_path):
    folder = tmp_path / "rasters"
    folder.mkdir()
    for i in range(3):
        write_geotiff(folder / f"r{i}.tif", synthetic_pixels(24 + 4 * i, 30, 3, seed=i), tiled=i % 2 == 0)
    out = tmp_path / "out"
    raster = RasterOptions(probs="confidence")
    summaries = [write_predictions(model, folder, out, shard=(rank, 2), raster=raster, **WINDOW) for rank in (0, 1)]
    assert [(s.share, s.written) for s in summaries] == [(2, 2), (1, 1)]
    manifest = merge_manifest(folder, out, rasters=True)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["output"].rsplit("/", 1)[1] for r in records] == ["r0.tif", "r1.tif", "r2.tif"]
    assert [r["size"] for r in records] == [[24, 30], [28, 30], [32, 30]]
    with rasterio.open(out / "r1.tif") as labels, rasterio.open(folder / "r1.tif") as source:
        assert labels.crs == source.crs and labels.transform == source.transform
    assert (out / "r2_probs.tif").is_file()
    again = write_predictions(model, folder, out, shard=(0, 1), raster=raster, **WINDOW)
    assert (again.written, again.skipped) == (0, 3)
    other = write_predictions(model, folder, out, shard=(0, 1), raster=raster, crop_size=32, stride=16)
    assert (other.written, other.skipped) == (3, 0)  # finished by another job: predicted again
    assert len(merge_manifest(folder, out, rasters=True).read_text().splitlines()) == 3


def test_overlay_is_refused_for_rasters(model, tmp_path):
    write_geotiff(tmp_path / "a.tif", synthetic_pixels(8, 8, 3))
    with pytest.raises(ValueError, match="no overlay"):
        write_predictions(model, tmp_path / "a.tif", tmp_path / "out", overlay=True, raster=RasterOptions())


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_more_than_255_classes_are_written_as_uint16(tmp_path):
    assert label_dtype(255) == ("uint8", 255) and label_dtype(256) == ("uint16", 65535)
    with pytest.raises(ValueError, match="65535"):
        label_dtype(70000)
    out = tmp_path / "labels.tif"
    store = StripStore(out, {"job": 1})
    store.open()
    labels = (np.arange(16 * 20).reshape(16, 20) % 300).astype(np.uint16)
    labels[0, 0] = 65535
    store.add(0, 16, {"labels": labels})
    classes = tuple(f"c{i}" for i in range(300))
    palette = np.random.default_rng(0).integers(0, 256, (300, 3), dtype=np.uint8)
    grid = RasterGrid(16, 20, None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    write_label_raster(out, grid, store, classes, palette, tile=16)
    with rasterio.open(out) as dst:
        assert dst.dtypes[0] == "uint16" and dst.nodata == 65535
        np.testing.assert_array_equal(dst.read(1), labels)
        assert json.loads(dst.tags()["CLASS_NAMES"]) == list(classes)
        assert dst.colormap(1)[299][:3] == tuple(int(v) for v in palette[299])
