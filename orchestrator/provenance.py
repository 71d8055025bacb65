"""Provenance: which code, software, machine and time produced a trial's records.

Every finished trial's ``summary.json`` holds a ``provenance`` object (:func:`trial_provenance`, written by
``orchestrator.trial.write_records``); ``analysis.collect`` flattens it into results columns and the tables
never pool trials whose ``code_version`` differs.

``code_version`` is ``<project version>+<source hash>``: the hash covers the ``*.py`` files of the package
actually imported (this folder), so it changes exactly when the code a trial runs changes, whether that code
is a clean checkout, a checkout with local edits, or a pip-installed copy, and commits that touch only
documentation or tests do not split a study's tables. The git commit and whether the checkout had local
changes are recorded beside it, so a version can be traced to its commit; both are null where the package
is not a git checkout (a pip-installed copy, a Ray job's uploaded working_dir) or git is absent.

What does not change within a process (versions, commit, host) is gathered once per process and cached: a
Tune actor that runs several trials pays for it once. Nothing here imports torch or Ray at module level; a
library that is not installed reads as null.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

PROJECT = "rethink-audio"
PACKAGE_DIR = Path(__file__).resolve().parent  # the code actually imported, wherever it was imported from
GIT_TIMEOUT_S = 2.0
UNKNOWN = "unknown"  # the code_version of records written before provenance existed


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second (``2026-01-01T12:00:00Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def trial_provenance(device: Any, started_at: str, first_started_at: str | None = None) -> dict[str, Any]:
    """The provenance of the process finishing a trial now: :func:`environment`, the device name of
    ``device`` (a torch device or its string), when this attempt started, when the first attempt started
    (a resumed trial; else this attempt's start) and now as ``finished_at``."""
    return environment() | {"device": device_name(str(device)), "started_at": started_at,
                            "first_started_at": first_started_at or started_at, "finished_at": utc_now()}


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """What does not change within a process: code version, git state, library versions, CUDA, host."""
    project = _version(PROJECT)
    git = git_state(PACKAGE_DIR)
    source = source_hash(PACKAGE_DIR)
    torch_info = _torch_info()
    return {"code_version": f"{project or UNKNOWN}+{source[:10]}", "project": project, "source_hash": source,
            "git_commit": git["commit"], "git_dirty": git["dirty"], "python": platform.python_version(),
            "torch": torch_info["torch"], "torchvision": _version("torchvision"), "timm": _version("timm"),
            "ray": _version("ray"), "cuda": torch_info["cuda"], "cudnn": torch_info["cudnn"],
            "host": socket.gethostname()}


def source_hash(package: Path) -> str:
    """SHA-256 over the relative path and bytes of every ``*.py`` file under ``package`` (sorted)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_state(directory: Path) -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git checkout whose top level holds ``directory`` (a package folder):
    dirty when a tracked or untracked, not ignored, file under ``directory`` differs from the commit. Both None
    when git is absent, times out, or ``directory`` is not the top of a checkout's package (a pip-installed
    copy inside some other repository's virtual environment must not report that repository's commit)."""
    head = _git(directory, "rev-parse", "--show-toplevel", "HEAD")
    lines = head.splitlines() if head else []
    if len(lines) != 2 or Path(lines[0]).resolve() != directory.resolve().parent:
        return {"commit": None, "dirty": None}
    status = _git(directory, "status", "--porcelain", "--", ".")
    return {"commit": lines[1], "dirty": None if status is None else bool(status.strip())}


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory args`` stdout, or None when git is absent, fails or takes too long."""
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _version(distribution: str) -> str | None:
    """An installed distribution's version (its metadata: importing Ray to ask would take a second)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_info() -> dict[str, Any]:
    """torch's version and the CUDA and cuDNN versions it was built with (None without torch, CUDA or cuDNN)."""
    try:
        import torch
    except ImportError:
        return {"torch": None, "cuda": None, "cudnn": None}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}


@functools.lru_cache(maxsize=8)
def device_name(device: str) -> str:
    """``cuda:0`` -> the GPU's name (``NVIDIA H100 80GB HBM3``); ``cpu`` -> ``cpu (<CPU model>)`` where
    /proc/cpuinfo names it, else ``cpu``."""
    if device.startswith("cuda"):
        try:
            import torch

            return torch.cuda.get_device_name(torch.device(device))
        except (ImportError, RuntimeError, AssertionError):
            return device
    model = _cpu_model()
    return f"{device} ({model})" if model else device


def _cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor() (may be empty)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip() or None
    except OSError:
        pass
    return platform.processor() or None
