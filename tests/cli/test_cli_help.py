"""The command line's help and listing answer without importing torch, and say what they default to and pick."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_cli_predict import NARROW_ARGS

from deeplabv3p.cli import COMMANDS, build_parser, main

# argv of the commands that must answer without torch (torch alone takes seconds to import)
LIGHT = [["--help"], ["--version"], ["list"], ["list", "--pretrained", "*r18*"], ["list", "--help"],
         ["convert", "--help"], ["export", "--help"], ["predict", "--help"], ["train", "--help"],
         ["evaluate", "--help"], ["demo", "--help"], ["prepare", "--help"]]  # fmt: skip


def _modules_after(argv: list[str]) -> dict:
    """Runs ``main(argv)`` in a fresh interpreter; which heavy modules it imported, and what it printed."""
    code = (
        "import json, sys\nfrom deeplabv3p.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'timm', 'numpy')}), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    return {"loaded": json.loads(done.stderr.strip().splitlines()[-1]), "out": done.stdout}


@pytest.mark.parametrize("argv", LIGHT, ids=" ".join)
def test_help_and_list_do_not_import_torch(argv):
    run = _modules_after(argv)
    assert run["out"].strip()
    assert run["loaded"] == {"torch": False, "timm": False, "numpy": False}


def test_the_top_level_help_lists_every_command_with_its_summary(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = "".join(capsys.readouterr().out.split())  # help wraps lines at spaces and hyphens
    for name, command in COMMANDS.items():
        assert "".join(f"{name} {command.help}".split()) in out


def test_every_command_builds_its_full_parser():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])


def test_export_help_shows_its_defaults_and_a_description(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "ONNX opset (onnx format; default: 17)" in out
    assert "(default: 512x512)" in out
    assert "DEFAULT_OPSET" not in out
    assert "compare it with PyTorch" in out


def test_predict_says_what_dtype_auto_picked(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    rc = main(["predict", str(tmp_path / "a.png"), *NARROW_ARGS, "--out", str(tmp_path / "out"), "--dtype", "auto"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "deeplabv3p: dtype='auto' on cpu" in err
