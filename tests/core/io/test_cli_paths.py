"""core.io.cli_paths (the path types every entry point uses), the atomic writer's last guard, and the behaviours of
issue 20 that the bad-input matrix cannot see: missing cluster tools, a conclusion from an empty folder, skipped
files named on stderr, a damaged study.json with its fix (--reset keeps finished runs)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from core.io.atomic import atomic_write_text
from core.io.cli_paths import CliParser, PathArg, check_path, error_line, input_file, missing_tools, output_file
from tests.conftest import exit_status

ODD = "dossier à espaces/visage été ☃.pth"


def test_each_role_accepts_a_good_path_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    data = tmp_path / ODD
    data.parent.mkdir()
    data.write_bytes(b"x")
    assert check_path(data, "input_file") is None
    assert check_path(data.parent, "input_dir") is None and check_path(data.parent, "input_path") is None
    assert check_path(tmp_path / "new é" / "deeper" / "out.json", "output_file") is None  # parents get created
    assert check_path(tmp_path / "new é" / "runs", "output_dir") is None
    assert check_path(data.parent, "output_dir") is None  # an existing folder is fine to write into
    assert not (tmp_path / "new é").exists()  # checking creates nothing
    assert input_file(str(data)) == data and PathArg("input_file", text=True)(str(data)) == str(data)
    assert PathArg("input_file", keywords=("auto",))("auto") == "auto"


@pytest.mark.parametrize(("role", "make", "words"), [
    ("input_file", "dir", "is a folder; a file is expected"),
    ("input_file", "missing", "file not found"),
    ("input_file", "empty", "is empty (0 bytes)"),
    ("input_dir", "file", "is a file; a folder is expected"),
    ("input_dir", "emptydir", "is an empty folder"),
    ("input_dir", "missing_parent", "the folder"),
    ("input_path", "missing", "file or folder not found"),
    ("output_file", "dir", "is a folder; give a file path"),
    ("output_file", "under_file", "is a file, not a folder"),
    ("output_file", "deep_under_file", "cannot be created"),
    ("output_dir", "file", "is a file; a folder is expected"),
])
def test_each_role_refuses_in_words(tmp_path: Path, role: str, make: str, words: str) -> None:
    target = {"dir": tmp_path / "d", "file": tmp_path / "f.txt", "missing": tmp_path / "nothing",
              "empty": tmp_path / "e.pth", "emptydir": tmp_path / "ed", "missing_parent": tmp_path / "no" / "x",
              "under_file": tmp_path / "f.txt" / "out.json", "deep_under_file": tmp_path / "f.txt" / "a" / "b"}[make]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    (tmp_path / "ed").mkdir()
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "e.pth").write_bytes(b"")
    problem = check_path(target, role)  # type: ignore[arg-type]
    assert problem is not None and words in problem and str(target) in problem and "\n" not in problem


def test_permission_checks_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.access decides (root passes chmod 000, so the denial is simulated here)."""
    (tmp_path / "f.pth").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert "no permission to read this file" in check_path(tmp_path / "f.pth", "input_file")
    assert "no permission to list this folder" in check_path(tmp_path / "d", "input_dir")
    assert "no permission to write in the folder" in check_path(tmp_path / "d" / "out.json", "output_file")
    assert "cannot be created, no permission to write in" in check_path(tmp_path / "d" / "new" / "x", "output_dir")


def test_parser_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    parser = CliParser(prog="python -m demo")
    parser.add_argument("--out", type=output_file, required=True)
    parser.add_argument("--n", type=int)
    for argv, words in ((["--out", str(tmp_path)], "argument --out: "), ([], "required: --out"),
                        (["--out", "x", "--n", "two"], "argument --n: invalid int value")):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.splitlines()) == 1 and words in err and "usage:" not in err


def test_parse_checked_stops_on_a_missing_default_input_unless_skipped(capsys: pytest.CaptureFixture[str],
                                                                       tmp_path: Path) -> None:
    """A default path is not seen by its argparse type; `parse_checked` checks it, naming the flag."""
    parser = CliParser(prog="python -m demo")
    parser.add_argument("--data", type=input_file, default=tmp_path / "absent.txt")
    with pytest.raises(SystemExit) as info:
        parser.parse_checked([])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--data" in err and "absent.txt" in err and len(err.splitlines()) == 1
    assert parser.parse_checked([], skip=("--data",)).data == tmp_path / "absent.txt"
    (tmp_path / "absent.txt").write_text("now here")
    assert parser.parse_checked([]).data == tmp_path / "absent.txt"


def test_error_line_has_no_quoted_key_error_and_no_newline() -> None:
    assert error_line(KeyError("unknown network 'x'; choose one of ['cbam']")) == "unknown network 'x'; choose one " \
        "of ['cbam']"
    assert error_line(ValueError("first\nsecond")) == "first second"
    assert error_line(RuntimeError()) == "RuntimeError"


def test_missing_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert missing_tools(("sbatch",), ("json", "no_such_package_here")) == [
        "sbatch", "the Python package no_such_package_here"]


def test_atomic_writer_refuses_a_folder_and_a_file_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.txt").write_text("kept")
    with pytest.raises(IsADirectoryError, match="it is a folder; give a file path"):
        atomic_write_text(tmp_path / "out", "x")
    (tmp_path / "file").write_text("kept")
    with pytest.raises(NotADirectoryError, match=r"file is a file, not a folder"):
        atomic_write_text(tmp_path / "file" / "sub" / "x.txt", "x")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "kept.txt", "out"]  # no temp file left


# External tools


def test_slurm_without_its_tools_stops_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import train.study.run as study

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x").write_text("x")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    argv = ["--models", "cbam", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs")]
    assert exit_status(study.main, [*argv, "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "--executor slurm needs" in err and "use --executor local" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # no study.json, no lock
    plan = study.make_plan(study.build_parser().parse_known_args([*argv, "--executor", "auto"])[0], [])
    assert plan.executor == "local"  # auto falls back when any of the tools is missing


def test_a_backend_whose_package_is_missing_is_refused_first(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import eval.deploy.onnx_runtime as runtime
    import eval.latency.timing as latency

    monkeypatch.setitem(runtime.BACKEND_PACKAGES, "openvino", ("no_such_openvino_here",))
    assert exit_status(latency.main, ["--backend", "openvino", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert "--backend openvino needs the Python package no_such_openvino_here" in err and "use --backend torch" in err


# Nothing skipped in silence


def _results_with_a_bad_eval_file(root: Path) -> None:
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "cbam__synthetic__x.json").write_text('{"model": "cbam", "evaluation": {"sett')
    (root / "latency_benchmark.csv").write_text("nonsense\n1\n")


def test_conclusion_refuses_an_empty_results_folder_and_keeps_the_old_one(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from eval.verdicts.conclusion import main

    good = tmp_path / "conclusion.md"
    good.write_text("# a good conclusion\n")
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "notes.txt").write_text("not a result")
    assert main(["--results", str(tmp_path / "wrong"), "--out", str(good)]) == 2
    err = capsys.readouterr().err
    assert "holds no measurement" in err and "left as it was" in err and len(err.splitlines()) == 1
    assert good.read_text() == "# a good conclusion\n"

    _results_with_a_bad_eval_file(tmp_path / "bad")
    assert main(["--results", str(tmp_path / "bad"), "--out", str(good)]) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert any("cbam__synthetic__x.json: unreadable evaluation file (not valid JSON" in w and "skipped" in w
               for w in warnings), warnings
    assert any("latency_benchmark.csv" in w for w in warnings), warnings
    assert good.read_text() == "# a good conclusion\n"


def test_compare_ap_unequal_seed_counts_name_the_side() -> None:
    from eval.verdicts.paired_ap import seed_count_warning

    assert seed_count_warning(3, 3) is None
    assert "seed spread of B is unknown (a single run)" in seed_count_warning(2, 1)
    assert "seed spread of cbam rests on 2 runs only" in seed_count_warning(2, 3, "cbam", "none")


# Study.json damaged


def _finished_run(study_dir: Path, name: str) -> None:
    (study_dir / name).mkdir(parents=True)
    (study_dir / name / "run.json").write_text(json.dumps({"status": "finished", "epochs_done": 1, "max_epoch": 1}))


def test_a_damaged_study_json_names_the_fix_and_reset_keeps_finished_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import train.study.run as study
    from core.lab.study_manifest import read_manifest

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x").write_text("x")
    argv = ["--models", "cbam", "--seeds", "0", "--data", str(tmp_path / "data"), "--out", str(tmp_path),
            "--name", "st", "--executor", "local", "--no-progress"]
    _finished_run(tmp_path / "st", "cbam_s0")
    good = json.dumps({"name": "st", "data": str(tmp_path / "data"), "models": ["cbam"], "seeds": [0],
                       "executor": "local", "runs": {"cbam_s0": {"model": "cbam", "seed": 0, "state": "done"}}})
    (tmp_path / "st" / "study.json").write_text(good[: len(good) // 2])
    assert study.main(argv) == 2
    err = capsys.readouterr().err
    assert "study.json: unreadable study manifest, cut short (truncated)" in err
    assert "restore it from a copy, or rerun the same python -m train.study command with --reset" in err
    assert (tmp_path / "st" / "study.json").read_text() == good[: len(good) // 2]  # untouched

    assert study.main([*argv, "--reset"]) == 0  # nothing to train: the finished run is found from its folder
    err = capsys.readouterr().err
    assert "set aside as study.json.bad-" in err and "skip cbam_s0: done" in err
    assert read_manifest(tmp_path / "st").runs["cbam_s0"].state == "done"
    aside = list((tmp_path / "st").glob("study.json.bad-*"))
    assert len(aside) == 1 and aside[0].read_text() == good[: len(good) // 2]


def test_argparse_type_name_in_messages() -> None:
    assert isinstance(input_file, PathArg) and input_file.__name__ == "input file"
    with pytest.raises(argparse.ArgumentTypeError, match="an empty path"):
        input_file("")


def test_unchecked_paths_is_only_a_dry_parse(tmp_path: Path) -> None:
    from core.io.cli_paths import unchecked_paths

    with unchecked_paths():
        assert input_file(str(tmp_path / "the reader's.pth")) == tmp_path / "the reader's.pth"
    with pytest.raises(argparse.ArgumentTypeError, match="file not found"):
        input_file(str(tmp_path / "the reader's.pth"))
