"""Atomic writes leave either the old file or the complete new one."""

import json
import os
import stat

import pytest

from ray_bench.atomic import atomic_path, write_bytes_atomic, write_json_atomic


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_success_replaces_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b.json"
    write_json_atomic(target, {"v": 1})
    write_json_atomic(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 2}
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]


def test_written_file_has_the_mode_a_plain_open_gives(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "m.json", {"v": 1})
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644


def _write_with_atomic_path(path):
    with atomic_path(path) as tmp:
        tmp.write_text("x")


def _write_parquet_through_atomic_path(path):
    # The result shards and prepared datasets: pyarrow opens the temporary file itself.
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"a": [1]}), tmp)


WRITERS = {
    "atomic_path": _write_with_atomic_path,
    "write_bytes_atomic": lambda path: write_bytes_atomic(path, b"x"),
    "write_json_atomic": lambda path: write_json_atomic(path, {"v": 1}),
    "atomic_path+pyarrow": _write_parquet_through_atomic_path,
}


@pytest.fixture(params=[0o022, 0o002, 0o077], ids=lambda m: f"umask{m:03o}")
def umask(request):
    """Run the test under this umask; the old one is restored afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.mark.parametrize("writer", list(WRITERS), ids=list(WRITERS))
def test_every_writer_gives_0666_less_the_umask(tmp_path, umask, writer):
    target = tmp_path / "new" / "f.out"
    WRITERS[writer](target)
    expected = 0o666 & ~umask  # what open(2) with O_CREAT and mode 0666 yields
    assert stat.S_IMODE(target.stat().st_mode) == expected
    # A file that existed with another mode is replaced by one with the umask's mode.
    os.chmod(target, 0o600)
    WRITERS[writer](target)
    assert stat.S_IMODE(target.stat().st_mode) == expected
    assert os.umask(umask) == umask  # the writers left the process umask alone
    assert [p.name for p in target.parent.iterdir()] == ["f.out"]


def test_writers_never_touch_the_umask(tmp_path, monkeypatch):
    # Changing the umask, even briefly, changes the mode of files that other threads create meanwhile.
    def refuse(_mask):
        raise AssertionError("os.umask called")

    monkeypatch.setattr(os, "umask", refuse)
    for name, writer in WRITERS.items():
        writer(tmp_path / name)
        assert (tmp_path / name).is_file()
