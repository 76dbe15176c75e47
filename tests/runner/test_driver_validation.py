"""Bad run inputs refused on the driver, before Ray starts, with one Error and one Hint."""

from __future__ import annotations

import pytest

from ray_bench.cli.main import main
from ray_bench.config import ModelSpec, RunConfig
from ray_bench.errors import ConfigError
from ray_bench.runner.driver import validate_models


def _config(tmp_path, models, engine="hf", **extra):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return RunConfig(models=models, datasets=["BBQ"], data_dir=data, out_dir=tmp_path / "out",
                     engine={"name": engine}, **extra)


def _fail(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("Error: ") and err[1].startswith("Hint: "), err
    return err


def test_model_names_that_cannot_be_result_directories_are_refused():
    with pytest.raises(ConfigError, match="at most 100"):
        ModelSpec.parse("m" * 300 + "=org/x")
    with pytest.raises(ConfigError, match="manifest"):
        ModelSpec.parse("manifest.json=org/x")
    assert ModelSpec.parse("m" * 100 + "=org/x").name == "m" * 100


def test_out_dir_that_is_a_file_or_the_data_dir_is_refused(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "file.txt").write_text("x")
    base = ["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path / "data")]
    err = _fail([*base, "--out", str(tmp_path / "file.txt")], capsys)
    assert "is an existing file" in err[0] and "file.txt" in err[0]
    err = _fail([*base, "--out", str(tmp_path / "data" / ".." / "data")], capsys)
    assert "out_dir and data_dir are the same directory" in err[0]


def test_engine_option_that_is_not_yaml_names_the_option(tmp_path, capsys):
    err = _fail(["run", "--model", "m=org/x", "--dataset", "BBQ", "--data", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--engine-option", "system={unclosed"], capsys)
    assert "--engine-option 'system={unclosed'" in err[0] and "not valid YAML" in err[0]


def test_model_directory_without_config_json_is_refused_for_model_engines(tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        validate_models(_config(tmp_path, [f"m={empty}"]))
    with pytest.raises(ConfigError, match="no config.json"):
        validate_models(_config(tmp_path, [f"m={empty}"], engine="vllm"))
    validate_models(_config(tmp_path, [f"m={empty}"], engine="dummy"))  # the dummy engine reads no files


def test_engine_factories_are_imported_and_checked_on_the_driver(tmp_path):
    with pytest.raises(ConfigError, match="cannot import engine factory"):
        validate_models(_config(tmp_path, ["m=org/x"], engine="no_such_module_xyz:factory"))
    with pytest.raises(ConfigError, match="not a factory"):
        validate_models(_config(tmp_path, ["m=org/x"], engine="os:sep"))
    validate_models(_config(tmp_path, ["m=org/x"], engine="ray_bench.engines.dummy:create_dummy_engine"))
