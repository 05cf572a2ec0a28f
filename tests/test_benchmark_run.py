"""benchmarks/run.py's --tasks: the help and the check come from the task list `plan` runs."""

from __future__ import annotations

import pytest

from benchmarks import run


def test_tasks_help_lists_every_task_plan_runs(capsys):
    with pytest.raises(SystemExit):
        run.build_parser().parse_args(["--help"])
    help_text = "".join(capsys.readouterr().out.split())
    assert "anyofinfer,train,predict,folder(default:infer,train,predict)" in help_text
    assert run.TASKS == ("infer", "train", "predict", "folder")


def test_tasks_are_read_as_names_and_an_unknown_one_is_refused(capsys):
    parser = run.build_parser()
    assert parser.parse_args(["--tasks", "infer,folder"]).tasks == ("infer", "folder")
    assert parser.parse_args([]).tasks == ("infer", "train", "predict")
    with pytest.raises(SystemExit):
        parser.parse_args(["--tasks", "infer,foldr"])
    assert "unknown task ['foldr']; choose from ['infer', 'train', 'predict', 'folder']" in capsys.readouterr().err
