"""Connecting to Ray: the cluster a job runs on, or a private local instance on a laptop."""

from __future__ import annotations

import os


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Initialise Ray once: join ``address`` (or ``RAY_ADDRESS``, as ``ray job submit`` sets it) if given,
    else start a local instance whose dashboard, if any, binds to 127.0.0.1 only."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1", log_to_driver=True)
