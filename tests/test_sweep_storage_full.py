"""A sweep whose results storage fills up: one `error:` line naming the file and the space, exit 1, no temp files,
and Tune's own bookkeeping does not crash the driver. The storage is a real 20 MB tmpfs, mounted in a private
user + mount namespace (`unshare -rm`: no root needed) around the sweep's process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import write_plan

REPO = Path(__file__).resolve().parent.parent


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


@pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged user+mount namespaces (unshare -rm)")
def test_a_full_disk_ends_the_sweep_with_one_error_line_and_no_temp_files(tiny_fsdd, tmp_path):
    store = tmp_path / "store"
    plan = write_plan(tmp_path, inits=["pretrained", "random"], dataset=tiny_fsdd)  # the dataset fits; checkpoints not
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = (f"cp -r {store} {mount}/ && mount -t tmpfs -o size=20m tmpfs {store} && cp -r {mount}/store/. {store} "
              f"&& {sys.executable} -m orchestrator.cli sweep {plan}; rc=$?; "
              f"echo LEFT: $(find {store} -name '*.tmp-*' -o -name 'error.pkl' -size 0); exit $rc")
    env = os.environ | {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout + done.stderr
    (tmp_path / "sweep.log").write_text(out)  # kept by pytest for a look after a failure
    assert done.returncode == 1, out[-4000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out[-4000:]
    assert "no space left on device writing " in errors[0] and "needed" in errors[0] and "free on" in errors[0]
    assert not any(word in out for word in ("EOFError", "Traceback", 'File "', "Unhandled error")), out[-4000:]
    assert done.stdout.split("LEFT:")[-1].strip() == "", out[-2000:]  # no temp file, no empty error.pkl
