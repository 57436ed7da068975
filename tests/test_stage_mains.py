"""Every stage main is thin and uniform: its paths are required options (dvc.yaml is the one place that names them),
and bad input (here: a file that is not there) exits 2 with a message naming the file, never a traceback."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def stage_commands() -> dict[str, list[str]]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: shlex.split(str(stage["cmd"]))[3:] for name, stage in stages.items()}


def _options(argv: list[str]) -> list[str]:
    return [a for a in argv if a.startswith("--")]


@pytest.mark.parametrize("stage", sorted(stage_commands()))
def test_a_stage_main_requires_every_path_dvc_yaml_gives_it(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module(f"pipelines.{stage}").main
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    for option in _options(stage_commands()[stage]):
        assert option in err, f"{stage}: {option} should be a required option"


@pytest.mark.parametrize("stage", sorted(set(stage_commands()) - {"generate", "ingest"}))
def test_a_stage_main_exits_2_naming_a_missing_input(stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    argv = [a.replace("data/", "nowhere/") if not a.startswith("--") else a for a in stage_commands()[stage]]
    main = importlib.import_module(f"pipelines.{stage}").main
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith("bad input: ") and "nowhere/" in err and "Traceback" not in err


def test_ingest_main_exits_2_naming_a_missing_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.ingest import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with pytest.raises(SystemExit) as stop:
        main(["--source", "sources/none.yaml", "--out", "interim", "--report", "ingest.json"])
    assert stop.value.code == 2 and "sources/none.yaml" in capsys.readouterr().err


def test_a_broken_params_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.train import main

    params = tmp_path / "params.yaml"
    params.write_text("base: [unclosed\n")
    with pytest.raises(SystemExit) as stop:
        main(["--features", "f", "--spec", "s", "--model", "m", "--baseline", "b", "--scorer", "c", "--importance", "i",
              "--valid-margins", "v", "--run", "r", "--report", "x", "--params", str(params)])
    assert stop.value.code == 2 and str(params) in capsys.readouterr().err


def test_a_calibrator_key_left_under_calibrate_is_refused_naming_its_new_place(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.calibrate import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["calibrate"]["method"] = "sigmoid"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = [a for a in stage_commands()["calibrate"]] + ["--params", str(tmp_path / "params.yaml")]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "calibrate.method is now calibrator.method" in err and "Traceback" not in err
