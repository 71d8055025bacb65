"""Terminal progress for the long stages: a clip counter for preprocessing, and Ray Data kept quiet meanwhile.

Progress always goes to stderr, so a command's stdout stays machine-readable under ``--json``. On a terminal
it is a tqdm bar; elsewhere (a pipe, a CI log, ``ray job logs``) a bar's carriage returns would pile up into
one unreadable line, so it prints a plain line at most every ``interval`` seconds and one at the end.

Ray Data, left alone, prints its own progress: tqdm bars per operator on a terminal, and otherwise
``logging_progress`` blocks ("Tasks: 0; Actors: 0; Queued blocks: ...") every 10 s plus its execution-plan
lines. :func:`quiet_ray_data` turns its bars off and keeps its INFO lines out of the console while our
counter runs; they still go to ``ray-data.log`` in the Ray session's log folder.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO


class Counter:
    """Items done out of ``total``: a tqdm bar on a terminal, else throttled plain lines (see module doc)."""

    def __init__(self, label: str, total: int, unit: str, *, stream: TextIO | None = None,
                 interval: float = 10.0):
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.done, self.last_line = 0, 0.0
        self.bar = None
        if _isatty(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def update(self, done: int) -> None:
        """Set the count to ``done`` (not an increment: pollers read an absolute count)."""
        done = min(max(done, self.done), self.total)  # never backwards, never past the total
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif done > self.done and time.time() - self.last_line >= self.interval and done < self.total:
            self._line(done)
        self.done = done

    def close(self, done: int | None = None) -> None:
        """Final count (default: the last one) and, off a terminal, the last line."""
        final = self.done if done is None else min(done, self.total)
        if self.bar is not None:
            self.bar.update(final - self.done)
            self.bar.close()
        else:
            self._line(final)
        self.done = final

    def _line(self, done: int) -> None:
        share = f" ({done / self.total:.0%})" if self.total else ""
        print(f"{self.label}: {done}/{self.total} {self.unit}{share}", file=self.stream, flush=True)
        self.last_line = time.time()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


@contextlib.contextmanager
def polling(counter: Counter, read: Callable[[], int], every: float = 1.0) -> Iterator[None]:
    """While the body runs (e.g. a blocking Ray Data write), a daemon thread feeds ``read()`` to ``counter``
    every ``every`` seconds. A failed read is skipped: progress is a courtesy and must never fail the run."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                counter.update(read())
            except Exception:  # e.g. the counting actor is gone because the run is failing
                pass

    thread = threading.Thread(target=loop, name="rethink-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)


class _DropProgressNotices(logging.Filter):
    """Ray Data's notices about its own progress display ("Progress bars disabled. To enable, ...",
    "Progress will be logged because stdout is ..."): ours replaces it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("ray.data._internal.progress")


@contextlib.contextmanager
def quiet_ray_data() -> Iterator[None]:
    """Ray Data without its progress bars and INFO console lines for the body; restored afterwards.

    Only console handlers are touched (raised to WARNING, progress notices dropped): Ray Data's file
    handler keeps logging everything to the session's ``ray-data.log``, and its warnings still show.
    """
    from ray.data import DataContext

    ctx = DataContext.get_current()
    bars = ctx.enable_progress_bars
    logger = logging.getLogger("ray.data")
    # stream handlers only: Ray Data's file handler (SessionFileHandler) is a plain Handler, kept as it is
    consoles = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    levels = [h.level for h in consoles]
    notices = _DropProgressNotices()
    ctx.enable_progress_bars = False
    for handler in consoles:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(notices)
    try:
        yield
    finally:
        ctx.enable_progress_bars = bars
        for handler, level in zip(consoles, levels):
            handler.setLevel(level)
            handler.removeFilter(notices)
