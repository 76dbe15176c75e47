"""`ray-bench datasets list|prepare` through the real entry point (main prints Error/Hint and exits)."""

from __future__ import annotations

import json

import pytest

from ray_bench.cli.main import main

ALL_NAMES = ["CEB-Recognition-S", "CEB-Jigsaw", "BiasLens-Choices", "SocialStigmaQA", "BBQ", "IAT",
             "StereoSet-Intersentence", "BiasLens-GenWhy", "CEB-Conversation-T", "FMT10K-IM-T"]


def _run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_list_prints_every_dataset_to_stdout(capsys):
    code, out, _ = _run(["datasets", "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "family", "kind", "axes"]
    for name in ALL_NAMES:
        assert any(line.startswith(name + " ") for line in lines), name
    assert "13,858" in out and "29,238 ambig" in out


def test_prepare_then_list_shows_prepared_counts(tmp_path, capsys):
    code, out, err = _run(["datasets", "prepare", "--source", "sample", "--out", str(tmp_path),
                           "--dataset", "CEB-Recognition", "--dataset", "IAT"], capsys)
    assert code == 0
    assert "Loading IAT from sample" in err and "Manifest:" in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["CEB-Recognition-S"][:3] == ["CEB-Recognition-S", "closed", "4"]
    assert rows["IAT"][:3] == ["IAT", "closed", "8"]
    assert json.loads((tmp_path / "manifest.json").read_text())["datasets"]["IAT"]["count"] == 8

    code, out, _ = _run(["datasets", "list", "--data", str(tmp_path)], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert lines["CEB-Recognition-T"].rstrip().endswith(" 4")
    assert lines["BBQ"].rstrip().endswith(" -")


def test_prepare_unknown_dataset_exits_1_with_suggestion(tmp_path, capsys):
    code, _, err = _run(["datasets", "prepare", "--source", "sample", "--out", str(tmp_path), "--dataset", "BBQQ"],
                        capsys)
    assert code == 1
    assert "Error: unknown dataset 'BBQQ'. Did you mean 'BBQ'?" in err
    assert "Hint: Known datasets:" in err


@pytest.mark.parametrize("command", ["list", "prepare"])
def test_help_ends_with_runnable_examples(command, capsys):
    code, out, _ = _run(["datasets", command, "--help"], capsys)
    assert code == 0
    examples = out[out.index("Examples:"):]
    assert f"ray-bench datasets {command}" in examples
    if command == "prepare":
        assert "--source sample --out data/" in examples and "--iat-stimuli" in out
