"""``ladon train``'s command line: ``run`` raises typed errors, ``train_main`` turns them into one line and status 2.
(Whole training runs are in test_stages.py.)"""

from __future__ import annotations

import argparse

import pytest

from ladon.train.config import TrainConfigError
from ladon.train.pipeline import add_arguments, run, train_main


def test_run_raises_typed_errors_for_the_command_line_to_report(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "missing.yaml"), "--stages", "a1,a2", "--max-steps", "1"])
    assert (args.stages, args.max_steps, args.resume) == ("a1,a2", 1, False)
    with pytest.raises(TrainConfigError, match="cannot read training config"):
        run(args)


def test_train_main_reports_one_error_line_and_status_2(tmp_path, capsys) -> None:
    (tmp_path / "bad.yaml").write_text("output_dir: out\nstages: [a2]\n")
    assert train_main([str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
