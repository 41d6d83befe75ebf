"""bj.save is atomic and bj.load keeps no file open; unreadable files are named for what they are.

- A save writes a hidden temporary file in the same folder, fsyncs it and renames it over the
  target: a writer killed with SIGKILL in the middle of a save leaves the old file intact and
  loadable, and the next save removes the killed writer's remnant.
- Load, edit, save to the same path works; after ``bj.load`` the process holds no handle on it.
- Empty, truncated, corrupt, netCDF-3, plain netCDF-4 and foreign InferenceData files each raise
  a ValueError saying which (a valid file loading is the negative control).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr

import bayesjoint as bj


def _idata(value: float = 0.0, draws: int = 20, size: int = 3) -> az.InferenceData:
    rng = np.random.default_rng(7)
    return az.from_dict(
        posterior={"x": value + rng.normal(size=(2, draws, size))},
        sample_stats={"lp": rng.normal(size=(2, draws))},
    )


def _open_handles(path: Path) -> list[str]:
    """Files under ``path``'s folder that this process has open (Linux /proc)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path.parent)):
            out.append(target)
    return out


def test_save_leaves_only_the_target_in_the_folder(tmp_path):
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    bj.save(_idata(1.0), path)
    assert sorted(os.listdir(tmp_path)) == ["run.nc"]
    np.testing.assert_array_equal(bj.load(path).posterior["x"].values, _idata(1.0).posterior["x"])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc to list fds")
def test_load_keeps_no_handle_and_load_edit_save_to_the_same_path_works(tmp_path):
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    loaded = bj.load(path)
    assert _open_handles(path) == []
    loaded.posterior["x"] = loaded.posterior["x"] + 1.0
    loaded.posterior.attrs["note"] = "edited"
    bj.save(loaded, path)
    back = bj.load(path)
    np.testing.assert_array_equal(back.posterior["x"].values, _idata(1.0).posterior["x"].values)
    assert back.posterior.attrs["note"] == "edited"
    assert back.posterior.identical(loaded.posterior)


def test_the_open_handle_check_sees_an_open_file(tmp_path):
    # Negative control: the check above finds a file that is open.
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    with open(path, "rb"):
        assert _open_handles(path) == [str(path)]


def test_save_keeps_the_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    os.chmod(path, 0o640)
    bj.save(_idata(1.0), path)
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_a_failing_save_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    bad = _idata(5.0)
    bad.posterior.attrs["not_serializable"] = {"a": 1}  # netCDF refuses a dict attribute
    with pytest.raises(TypeError):
        bj.save(bad, path)
    assert sorted(os.listdir(tmp_path)) == ["run.nc"]
    np.testing.assert_array_equal(bj.load(path).posterior["x"].values, _idata().posterior["x"])


def test_save_refuses_a_folder_or_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        bj.save(_idata(), tmp_path)
    with pytest.raises(ValueError, match="does not exist; create it first"):
        bj.save(_idata(), tmp_path / "nowhere" / "run.nc")


_WRITER = """
import sys
import numpy as np, arviz as az
import bayesjoint as bj
path = sys.argv[1]
x = np.full((4, 2000, 600), 2.0)  # 38 MB: a save takes long enough to be killed inside it
idata = az.from_dict(posterior={"x": x})
print("ready", flush=True)
while True:
    bj.save(idata, path)
"""


def _kill_a_writer_mid_save(tmp_path: Path, path: Path) -> bool:
    """Start a writer saving to ``path`` in a loop; SIGKILL it once a save has begun writing.

    Returns whether the kill hit a save in the middle (its temporary file is left behind: a
    finished save would have renamed it over ``path``).
    """
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temporaries = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
            if temporaries and os.path.getsize(tmp_path / temporaries[0]) > 0:
                os.kill(proc.pid, signal.SIGKILL)  # a save is under way and has written part
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the writer never started a save within 60 s"
    return any(n.endswith(".tmp") for n in os.listdir(tmp_path))


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signal")
def test_sigkill_during_a_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "run.nc"
    old = _idata(1.0)
    for _ in range(3):  # a kill that lands after the rename is retried (rare)
        bj.save(old, path)
        old_bytes = path.read_bytes()
        if _kill_a_writer_mid_save(tmp_path, path):
            break
        assert bj.load(path).posterior["x"].shape == (4, 2000, 600)  # the new file, complete
    else:
        pytest.fail("three kills in a row landed between saves")
    # Killed mid-save: the target is the old file, byte for byte, and loads; the remnant is
    # hidden under another name.
    assert path.read_bytes() == old_bytes
    np.testing.assert_array_equal(bj.load(path).posterior["x"].values, old.posterior["x"].values)
    remnants = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert remnants and all(n.startswith(".run.nc.") for n in remnants)
    # The next save removes the killed writer's remnant.
    bj.save(_idata(3.0), path)
    assert sorted(n for n in os.listdir(tmp_path) if n != "writer.py") == ["run.nc"]


def test_a_non_atomic_write_killed_midway_would_lose_the_file(tmp_path):
    # Negative control for the kill test: writing in place and stopping halfway leaves a file
    # that does not load (what the temporary file and the rename prevent).
    path = tmp_path / "run.nc"
    bj.save(_idata(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        bj.load(path)


# -- unreadable files, each named --------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    return Path(bj.save(_idata(), tmp_path / "good.nc"))


def test_a_valid_file_loads(saved):
    assert bj.load(saved).groups() == ["posterior", "sample_stats"]


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nc"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        bj.load(path)


def test_truncated_file_says_how_much_is_missing(saved, tmp_path):
    data = saved.read_bytes()
    path = tmp_path / "cut.nc"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(
        ValueError, match=rf"truncated: {len(data) - 100} bytes of the {len(data)} its header"
    ):
        bj.load(path)


def test_corrupt_file(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[200:] = bytes(len(data) - 200)  # keep the signature and superblock, zero the rest
    path = tmp_path / "zeros.nc"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="it is corrupt"):
        bj.load(path)


def test_text_file_is_neither_format(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("not a netCDF file")
    with pytest.raises(ValueError, match="neither netCDF-4/HDF5 nor netCDF-3"):
        bj.load(path)


def test_netcdf3_file(tmp_path):
    path = tmp_path / "classic.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(path, format="NETCDF3_64BIT", engine="scipy")
    with pytest.raises(ValueError, match=r"netCDF-3 \(classic\) file"):
        bj.load(path)


def test_plain_netcdf4_file_without_groups(tmp_path):
    path = tmp_path / "plain.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(ValueError, match="no InferenceData groups"):
        bj.load(path)


def test_inferencedata_written_by_another_program(tmp_path):
    path = tmp_path / "foreign.nc"
    _idata().to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(ValueError, match=r"not one written by bj\.save .*bayesjoint_version"):
        bj.load(path)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        bj.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        bj.load(tmp_path / "missing.nc")


def test_a_save_does_not_remove_the_temporary_file_of_a_longer_name(tmp_path):
    # ".run.7.<pid>.<hex>.tmp" belongs to a save of "run.7", not to a killed save of "run"
    other = tmp_path / ".run.7.999999.0123abcd.tmp"
    other.write_bytes(b"x")
    stale = tmp_path / ".run.999999.0123abcd.tmp"  # a leftover of "run" (no process 999999)
    stale.write_bytes(b"x")
    bj.save(_idata(), tmp_path / "run")
    assert other.exists()
    assert not stale.exists()  # control: the same rule does remove run's own leftover
