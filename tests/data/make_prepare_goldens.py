"""How tests/data/prepare_goldens.json was made (not run by the tests): the fabricated raw downloads of
tests/layout_trees.py converted by mmsegmentation 1.2.2's own scripts (tools/dataset_converters/{potsdam,vaihingen,
isaid,loveda}.py), in a private venv with mmcv-lite 2.1.0 and Pillow 10.0.0 (from Pillow 10.2 on, mmseg's iSAID
script writes broken label PNGs: a palette-less "P" image is saved with its indices merged), and every output file
recorded by name with a digest of its decoded pixels.

    python tests/data/make_prepare_goldens.py MMSEG_PYTHON MMSEG_CONVERTERS_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
import layout_trees
from layout_trees import pixel_digests

RAW = {
    "potsdam": layout_trees.raw_potsdam,
    "vaihingen": layout_trees.raw_vaihingen,
    "isaid": layout_trees.raw_isaid,
    "loveda": layout_trees.raw_loveda,
}


def main(python: str, converters: str) -> None:
    goldens = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in RAW.items():
            raw, out = Path(tmp) / f"{name}_raw", Path(tmp) / f"{name}_out"
            make(raw)
            subprocess.run([python, "-W", "ignore", f"{converters}/{name}.py", str(raw), "-o", str(out)], check=True)
            goldens[name] = pixel_digests(out)
    target = Path(__file__).with_name("prepare_goldens.json")
    target.write_text(json.dumps(goldens, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
