"""Faults the machine can cause: a kill mid-write and a full disk lose nothing."""

from __future__ import annotations

import builtins
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import torch

from skysift import io
from skysift.cli import parser, run
from skysift.learn import checkpoints


def _writer_script(path, n):
    return textwrap.dedent(f"""
        import numpy as np, sys
        from skysift import io
        rng = np.random.default_rng(0)
        imgs = rng.normal(size=({n}, 3, 64, 64)).astype("float32")
        print("writing", flush=True)
        io.write_stamps({str(path)!r}, {{"images": imgs}}, {{"tile": "new"}}, chunk_objects=16)
        print("done", flush=True)
    """)


def test_kill_mid_write_leaves_old_output_intact(tmp_path):
    out = tmp_path / "stamps.h5"
    old = np.ones((4, 3, 8, 8), np.float32)
    io.write_stamps(out, {"images": old}, {"tile": "old"})
    proc = subprocess.Popen([sys.executable, "-c", _writer_script(out, 3000)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    partial = io.partial_path(out)
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert partial.exists(), "the writer never started its temporary file"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with h5py.File(out) as fh:  # still the complete old file
        np.testing.assert_array_equal(fh["images"][()], old)
        assert fh.attrs["tile"] == "old"
    # the next run replaces the stale temporary file and completes
    io.write_stamps(out, {"images": old * 2}, {"tile": "rerun"})
    assert not partial.exists()
    with h5py.File(out) as fh:
        assert fh.attrs["tile"] == "rerun"


def test_disk_full_leaves_no_partial_file_and_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "result.json"

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(io.partial_path(out)))

    def body(args):
        with io.atomic_output(out) as tmp:
            tmp.write_text("{")
            full_disk()
        return 0

    code = run(body, parser("test"), [])
    assert code == 3  # the documented exit status of a full disk (docs/reliability.md)
    err = capsys.readouterr().err
    assert "disk full" in err and str(out) in err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def full_disk(monkeypatch):
    """The writers' temporary files opened on /dev/full: every write meets the kernel's
    ENOSPC, through the real json, h5py and torch writers."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    real_open, real_h5 = builtins.open, h5py.File

    def redirected(opener):
        def opened(path, mode="r", *args, **kwargs):
            full = str(path).endswith(".partial") and "w" in mode
            return opener("/dev/full" if full else path, mode, *args, **kwargs)
        return opened

    monkeypatch.setattr(io, "open", redirected(real_open), raising=False)
    monkeypatch.setattr(checkpoints, "open", redirected(real_open), raising=False)
    monkeypatch.setattr(h5py, "File", redirected(real_h5))


WRITERS = {
    "json": lambda out: io.write_json(out, {"values": list(range(200_000))}),
    "hdf5": lambda out: io.write_stamps(out, {"images": np.ones((64, 3, 32, 32), np.float32)},
                                        {"tile": "t"}),
    "checkpoint": lambda out: checkpoints.save_checkpoint(out, {"w": torch.ones(512, 512)}),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_real_full_disk_exits_3_naming_the_output(writer, tmp_path, full_disk, capsys):
    """Each kind of output skysift writes (JSON, HDF5, a torch checkpoint), on a disk that
    is really full: exit 3, one message naming the output, nothing left behind."""
    out = tmp_path / f"result.{writer}"

    def body(args):
        WRITERS[writer](out)
        return 0

    assert run(body, parser("test"), []) == 3
    err = capsys.readouterr().err
    assert f"disk full while writing {out} (No space left on device)" in err
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_are_not_disguised(tmp_path):
    def body(args):
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(OSError):
        run(body, parser("test"), [])
