"""What a progress display looks like, for tests that check one: the markers of Tune's status tables and of
Ray Data's status blocks, one sweep epoch line, and Ray Data's own display turned on as a user gets it."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

TUNE_OUTPUT = ("╭", "Trial name", "Trial status", "Configuration for experiment", "View detailed results")
RAY_DATA_OUTPUT = ("logging_progress", "Queued blocks", "Running Dataset", "Starting execution of Dataset")
EPOCH_LINE = re.compile(r"^\[sweep\]   \S+-fold1-seed0-\w+ epoch 1: train_loss [\d.]+ valid_acc [\d.]+ "
                        r"test_acc [\d.]+$", re.M)


class CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write (a handler holding a capture's stream
    would outlive it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextmanager
def ray_data_progress_shown() -> Iterator[None]:
    """Ray Data's progress display as a user gets it (tests/conftest.py turns it off for the suite): without
    this, the absence of its status blocks proves nothing. Its console handler writes to the ``sys.stderr`` of
    the moment Ray Data was imported (pytest's own capture, here), so it is pointed at whatever ``sys.stderr``
    is at each write, where a terminal user would see it. Both are restored afterwards."""
    import logging

    from ray._private.log import PlainRayHandler
    from ray.data import DataContext

    context = DataContext.get_current()
    handlers = [h for h in logging.getLogger("ray.data").handlers
                if isinstance(h, PlainRayHandler)]  # not pytest's own log capture, also a StreamHandler
    saved = context.enable_progress_bars, [h.stream for h in handlers]
    context.enable_progress_bars = True
    for handler in handlers:
        handler.stream = CurrentStderr()
    try:
        yield
    finally:
        context.enable_progress_bars = saved[0]
        for handler, stream in zip(handlers, saved[1]):
            handler.stream = stream


def shown(text: str, markers: tuple[str, ...]) -> list[str]:
    """The ``markers`` that appear in ``text`` (an empty list: none of that display was shown)."""
    return [m for m in markers if m in text]
