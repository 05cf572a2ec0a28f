"""``deeplabv3p predict`` on rasters: ``--out NAME.tif`` for one raster, ``--geotiff`` for a folder (manifest,
resume), and the errors for bad ``--bands`` and raster flags without a raster output."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("rasterio")

import rasterio
from raster_helpers import synthetic_pixels, write_geotiff
from test_cli_predict import NARROW_ARGS, _narrow_model

from deeplabv3p.cli import main
from deeplabv3p.inference.pipeline import predict

WINDOW_ARGS = ["--window", "32", "--stride", "20", "--no-progress"]


def test_one_raster_to_a_label_raster(tmp_path, capsys):
    pixels = synthetic_pixels(40, 52, 4)
    source = write_geotiff(tmp_path / "ortho.tif", pixels)
    out = tmp_path / "labels.tif"
    args = ["predict", str(source), *NARROW_ARGS, "--out", str(out), "--bands", "3,2,1", "--probs", "confidence"]
    assert main([*args, *WINDOW_ARGS]) == 0
    assert "with the input's CRS" in capsys.readouterr().out
    expected = predict(_narrow_model(), np.moveaxis(pixels[[2, 1, 0]], 0, -1), mode="slide", resize=False,
                       crop_size=32, stride=20)  # fmt: skip
    with rasterio.open(out) as dst, rasterio.open(source) as src:
        assert dst.crs == src.crs and dst.transform == src.transform
        np.testing.assert_array_equal(dst.read(1), expected.labels)
    assert (tmp_path / "labels_probs.tif").is_file()
    assert main([*args, *WINDOW_ARGS]) == 0
    assert "already there" in capsys.readouterr().out


def test_folder_of_rasters_with_manifest(tmp_path, capsys):
    folder = tmp_path / "rasters"
    folder.mkdir()
    for i, name in enumerate(("a", "b")):
        write_geotiff(folder / f"{name}.tif", synthetic_pixels(30 + 10 * i, 36, 3, seed=i), nodata=0)
    out = tmp_path / "out"
    assert main(["predict", str(folder), *NARROW_ARGS, "--out", str(out), "--geotiff", *WINDOW_ARGS]) == 0
    assert "label rasters of 2 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif", "manifest.jsonl"]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["size"] for r in records] == [[30, 36], [40, 36]]
    assert main(["predict", str(folder), *NARROW_ARGS, "--out", str(out), "--geotiff", *WINDOW_ARGS]) == 0
    again = capsys.readouterr().out
    assert "of 0 image(s)" in again and "2 already there" in again


@pytest.mark.parametrize("bands", ["4,3,x", "0,1,2", "1,1,2"])
def test_bad_bands_flag_is_a_usage_error(tmp_path, capsys, bands):
    source = write_geotiff(tmp_path / "ortho.tif", synthetic_pixels(8, 8, 3))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(source), *NARROW_ARGS, "--out", str(tmp_path / "l.tif"), "--bands", bands])
    assert exit_info.value.code == 2
    assert "--bands" in capsys.readouterr().err


def test_band_beyond_the_raster_names_file_and_count(tmp_path, capsys):
    source = write_geotiff(tmp_path / "ortho.tif", synthetic_pixels(8, 8, 3))
    out = tmp_path / "l.tif"
    assert main(["predict", str(source), *NARROW_ARGS, "--out", str(out), "--bands", "4,3,2", *WINDOW_ARGS]) == 2
    err = capsys.readouterr().err
    assert "ortho.tif" in err and "band 4 but the raster has 3" in err and not out.exists()


def test_raster_flags_need_a_raster_output(tmp_path, capsys):
    source = write_geotiff(tmp_path / "ortho.tif", synthetic_pixels(8, 8, 3))
    assert main(["predict", str(source), *NARROW_ARGS, "--out", str(tmp_path / "o"), "--probs", "confidence"]) == 2
    assert "--geotiff" in capsys.readouterr().err  # --bands is no raster flag: it chooses TIFF bands for PNGs too
    two = [str(source), str(source)]
    assert main(["predict", *two, *NARROW_ARGS, "--out", str(tmp_path / "l.tif")]) == 2
    assert "2 inputs" in capsys.readouterr().err
