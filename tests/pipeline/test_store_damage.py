"""A SQLite store that is damaged or cannot be opened is one line saying how to recover, before anything runs,
and nothing is written into it (issue 29, items 11 and 15)."""

import hashlib
import os
import shutil

import pytest

from tests.conftest import tfpipe

pytestmark = pytest.mark.slow


def _one_line(done, *words) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfpipe: error: "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Prefect" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_damaged_store_is_refused_before_anything_runs_and_left_as_it_is(tiny_run, tmp_path):
    assert tiny_run.done.returncode == 0, tiny_run.done.stderr[-3000:]
    folder = tmp_path / "project"
    shutil.copytree(tiny_run.folder, folder)
    store = folder / "root" / "metadata.sqlite"
    data = bytearray(store.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 4096] = os.urandom(4096)  # 4 KB overwritten in the middle of the file
    store.write_bytes(bytes(data))
    before = hashlib.sha256(store.read_bytes()).hexdigest()

    for command in (
        ["run", "pipeline.yaml"],
        ["runs", "--config", "pipeline.yaml"],
        ["artifacts", "--config", "pipeline.yaml"],
    ):
        _one_line(tfpipe(*command, cwd=folder), str(store), "is damaged", "Restore it from a backup")
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before  # nothing written into it


def test_a_store_that_cannot_be_created_is_refused_before_anything_runs(tmp_path):
    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path / "project")
    (tmp_path / "afile").write_text("")
    done = tfpipe("run", config, "--metadata", tmp_path / "afile" / "metadata.sqlite", cwd=config.parent)
    _one_line(done, "cannot be created", "is a file, not a folder")
    assert not (tmp_path / "project" / "root").exists()


def test_a_store_in_a_read_only_folder_is_refused_before_anything_runs(tmp_path):
    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path / "project")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): the folder cannot be made read-only")
        done = tfpipe("run", config, "--metadata", locked / "sub" / "metadata.sqlite", cwd=config.parent)
        _one_line(done, "cannot be created", "not writable")
    finally:
        locked.chmod(0o700)
    assert not (tmp_path / "project" / "root").exists()


def test_a_folder_given_as_the_store_is_refused(tmp_path):
    from tests.conftest import tiny_titanic

    config = tiny_titanic(tmp_path / "project")
    (tmp_path / "adir").mkdir()
    _one_line(tfpipe("run", config, "--metadata", tmp_path / "adir", cwd=config.parent), "is a folder")
    assert not (tmp_path / "project" / "root").exists()
