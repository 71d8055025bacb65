"""A trial's one checkpoint file: written atomically, read with ``weights_only=True``, set aside when damaged.

``checkpoint.pt`` in the trial folder holds the weights, optimizer, scheduler, torch's RNG (and CUDA's, on a
GPU), the curve so far and, when the trial stopped inside an epoch (preempted or interrupted), how far into
that epoch it got (``TrialState.partial``), so the resumed run continues at the very next step.

A file that cannot be loaded (truncated by a full disk or a killed copy, written by another program) is
moved aside as ``checkpoint.pt.corrupt-<UTC time>`` with one warning line, and the trial starts over: a
damaged file must never block its trial until a person deletes it.
"""

from __future__ import annotations

import io
import sys
import time

import torch

from orchestrator import storage
from orchestrator.training import TrialState

CHECKPOINT_FILE = "checkpoint.pt"


def save_checkpoint(records: storage.Location, network, optimizer, scheduler, state: TrialState) -> None:
    """One file, written atomically: weights, optimizer, scheduler, RNG and the curve so far."""
    tensors, meta = state.to_checkpoint()
    rng = {"rng": torch.get_rng_state()}
    if next(unwrap(network).parameters()).is_cuda:
        rng["cuda_rng"] = torch.cuda.get_rng_state()
    buffer = io.BytesIO()
    torch.save({"model": unwrap(network).state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "meta": meta, **rng, **tensors}, buffer)
    storage.write_bytes(records.join(CHECKPOINT_FILE), buffer.getvalue())


def load_checkpoint(records: storage.Location, network, optimizer, scheduler) -> TrialState | None:
    """The trial's state from its checkpoint (weights etc. loaded in place), or None when there is none, or
    when it was damaged (then moved aside, see the module docstring: the caller starts the trial over)."""
    loc = records.join(CHECKPOINT_FILE)
    if not storage.exists(loc):
        return None
    data = storage.read_bytes(loc)  # a read error is a storage problem, not a damaged file: it propagates
    try:  # parse everything before touching the model: a damaged file leaves the fresh trial as it was
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        state = TrialState.from_checkpoint(blob, blob["meta"])
        model, optim, sched, rng = blob["model"], blob["optimizer"], blob["scheduler"], blob["rng"]
    except Exception as exc:  # noqa: BLE001 - zip errors, unpickling refusals, missing keys
        _set_aside(loc, data, exc)
        return None
    # a file that parses but does not fit this model is not damage but another trial's: that error propagates
    unwrap(network).load_state_dict(model)
    optimizer.load_state_dict(optim)
    scheduler.load_state_dict(sched)
    torch.set_rng_state(rng)
    if "cuda_rng" in blob and torch.cuda.is_available():
        torch.cuda.set_rng_state(blob["cuda_rng"])
    state.resumed_at_epoch = state.next_epoch
    return state


def _set_aside(loc: storage.Location, data: bytes, exc: BaseException) -> None:
    """Move a damaged checkpoint to ``<name>.corrupt-<UTC time>`` and say so in one line."""
    aside = storage.resolve(f"{loc.uri}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    storage.write_bytes(aside, data)
    storage.guarded(loc, lambda: loc.fs.delete_file(loc.path))
    reason = (str(exc).splitlines() or [""])[0][:160]
    print(f"warning: {loc.uri} could not be loaded ({type(exc).__name__}: {reason}); moved it to "
          f"{aside.uri.rsplit('/', 1)[-1]} and started the trial over", file=sys.stderr, flush=True)


def unwrap(network):
    """The model inside a DDP wrapper (``.module``), or the model itself."""
    return getattr(network, "module", network)
