"""Connecting to Ray: the cluster a job runs on, or a private local instance on a laptop."""

from __future__ import annotations

import os


def ensure_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Initialise Ray once: join ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) if given,
    else start a local instance whose dashboard, if any, binds to 127.0.0.1 only. ``log_to_driver=False``
    keeps worker output in Ray's session logs instead of the terminal (the demo's quiet mode)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
                 log_to_driver=log_to_driver)
