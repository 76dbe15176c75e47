"""Sources: local directories, URLs (through the cache), offline errors, missing and skipped files."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from ray_bench.datasets import MANIFEST_NAME, prepare, read_questions
from ray_bench.errors import ConfigError, DownloadError

UNREACHABLE = "http://127.0.0.1:9/data"

ADULT_ROW = {"idx": "A/gender/0", "prompt": "Income above 50K?", "label": "no", "choices": ["YES", "NO"],
             "sensitive_attr": "female"}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must not be routed through a proxy from the environment."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def http_source(tmp_path, write_source):
    """Serve a tiny source tree on localhost; yields (base URL, served root)."""
    root = tmp_path / "served"
    write_source(root, "CEB-Adult", "gender", [ADULT_ROW])
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def test_offline_source_raises_download_error(tmp_path):
    with pytest.raises(DownloadError) as info:
        prepare(UNREACHABLE, tmp_path / "out", ["CEB-Adult"], timeout=2, log=lambda _: None)
    assert f"{UNREACHABLE}/closed_datasets/CEB-Adult/gender.json" in str(info.value)
    assert "--source DIR" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_offline_iat_stimuli_raise_download_error_with_hint(tmp_path, source_dir):
    with pytest.raises(DownloadError) as info:
        prepare(source_dir, tmp_path / "out", ["IAT"], iat_stimuli=f"{UNREACHABLE}/iat.csv", timeout=2,
                log=lambda _: None)
    assert "IAT" in str(info.value) and "127.0.0.1:9" in str(info.value)
    assert "--iat-stimuli" in info.value.hint


def test_cli_offline_exits_1_with_error_and_hint(tmp_path, capsys):
    from ray_bench.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["datasets", "prepare", "--source", UNREACHABLE, "--out", str(tmp_path / "o"), "--dataset", "CEB-Adult",
              "--timeout", "2"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "Error: could not download http://127.0.0.1:9/data/closed_datasets/CEB-Adult/gender.json" in err
    assert "Hint:" in err


def test_url_source_downloads_treats_404_as_missing_and_caches(http_source, tmp_path, _isolated_cache, capsys):
    url, served = http_source
    report = prepare(url, tmp_path / "out", ["CEB-Adult", "CEB-Credit"])
    (adult,) = report.prepared
    assert adult.counts == {"gender": 1}
    assert adult.missing == ("closed_datasets/CEB-Adult/race.json",)
    assert report.skipped == {"CEB-Credit": ("closed_datasets/CEB-Credit/age.json",
                                             "closed_datasets/CEB-Credit/gender.json")}
    err = capsys.readouterr().err
    assert "Warning: CEB-Adult: 1 source file(s) absent: closed_datasets/CEB-Adult/race.json" in err
    assert "Warning: skipping CEB-Credit" in err
    cached = list(_isolated_cache.rglob("*gender.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text()) == [ADULT_ROW]
    # Served file gone: the second run must come from the cache.
    (served / "closed_datasets" / "CEB-Adult" / "gender.json").unlink()
    again = prepare(url, tmp_path / "out2", ["CEB-Adult"], log=lambda _: None)
    assert again.prepared[0].count == 1


def test_missing_and_skipped_are_recorded_in_the_manifest(source_dir, tmp_path, capsys, write_source):
    write_source(source_dir, "CEB-Adult", "gender", [ADULT_ROW])
    write_source(source_dir, "CEB-Adult", "nationality", [ADULT_ROW])  # not a CEB-Adult axis
    prepare(source_dir, tmp_path / "out", ["CEB-Adult", "SocialStigmaQA"])
    err = capsys.readouterr().err
    assert "ignoring file(s) that are not known axes: closed_datasets/CEB-Adult/nationality.json" in err
    assert "skipping SocialStigmaQA: no source file found (closed_datasets/SocialStigmaQA/yes_no.json)" in err
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["datasets"]["CEB-Adult"]["missing"] == ["closed_datasets/CEB-Adult/race.json"]
    assert manifest["datasets"]["CEB-Adult"]["counts"] == {"gender": 1}
    assert manifest["datasets"]["CEB-Adult"]["expected"] == {"gender": 500}
    assert manifest["datasets"]["CEB-Adult"]["source"] == str(source_dir)
    assert manifest["skipped"]["SocialStigmaQA"]["missing"] == ["closed_datasets/SocialStigmaQA/yes_no.json"]
    assert not (tmp_path / "out" / "SocialStigmaQA.parquet").exists()
    assert read_questions(tmp_path / "out", "CEB-Adult").num_rows == 1


def test_count_differing_from_reference_warns(source_dir, tmp_path, capsys, write_source):
    write_source(source_dir, "CEB-Adult", "gender", [ADULT_ROW])
    prepare(source_dir, tmp_path / "out", ["CEB-Adult"])
    assert "CEB-Adult/gender has 1 rows; the reference has 500" in capsys.readouterr().err


def test_source_that_is_not_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        prepare(tmp_path / "nope", tmp_path / "out", ["BBQ"])


def test_source_without_any_dataset_file_is_a_config_error(source_dir, tmp_path):
    with pytest.raises(ConfigError, match="no dataset file found") as info:
        prepare(source_dir, tmp_path / "out", ["BBQ", "CEB-Adult"], log=lambda _: None)
    assert "closed_datasets" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_missing_local_stimuli_file_is_a_config_error(source_dir, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        prepare(source_dir, tmp_path / "out", ["IAT"], iat_stimuli=tmp_path / "none.csv", log=lambda _: None)


def test_cache_dir_follows_environment(_isolated_cache):
    from ray_bench.datasets import cache_dir

    assert cache_dir() == Path(_isolated_cache)
