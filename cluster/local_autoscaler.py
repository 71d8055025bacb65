"""A private Ray head on this machine with Ray's fake multi-node autoscaler: see autoscaling without a cloud.

Ray's own helper (``ray.cluster_utils.AutoscalingCluster``) runs ``ray stop --force`` when it starts and
stops, which ends every Ray process of the user on the machine, and the pip wheel lacks the base config it
reads. This module starts the same thing through :func:`cluster.local_head.start_local_head` instead: ``ray start
--head --block --autoscaling-config=...`` with ``RAY_FAKE_CLUSTER=1``, in a session of its own, token auth,
every port on 127.0.0.1. The autoscaler (a child of that head) launches worker raylets on this machine as
pending tasks and actors ask for resources. They join the head's temp dir, so :meth:`LocalHead.stop` ends
them with the head: exactly this cluster's processes, by session and temp dir, never ``ray stop``.

    python -m cluster.local_autoscaler      # a head with 1 CPU, workers {CPU: 1, trial_slot: 1} x 0..3;
                                            # prints the address; Ctrl-C stops it (and only it)
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from cluster.local_head import LocalHead, free_port, start_local_head

HEAD_TYPE = "ray.head.default"  # the head node type name the fake provider expects
EMPTY_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
               "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
               "rsync_filter")


def fake_cluster_config(head: dict[str, float], workers: dict[str, dict[str, Any]], gcs_address: str,
                        idle_timeout_minutes: float = 1.0, upscaling_speed: float = 10.0) -> dict[str, Any]:
    """The autoscaling config the fake provider reads (what the wheel's missing example.yaml would give).

    ``workers`` maps a node type name to ``{resources, min_workers, max_workers}``; ``resources`` may hold
    ``object_store_memory`` (bytes) besides CPU, GPU and custom resources. ``gcs_address`` is the head's
    GCS: the provider starts worker raylets against it (its default, port 6379, may be someone else's).
    """
    types = {name: {"node_config": {}, "min_workers": 0, **spec} for name, spec in workers.items()}
    types[HEAD_TYPE] = {"resources": dict(head), "node_config": {}, "max_workers": 0}
    config = {
        "cluster_name": "fake-local", "max_workers": sum(t.get("max_workers", 0) for t in types.values()),
        "upscaling_speed": upscaling_speed, "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "head_node_type": HEAD_TYPE, "auth": {}, "docker": {}, "file_mounts": {},
        "file_mounts_sync_continuously": False, "available_node_types": types,
    }
    return config | {key: [] for key in EMPTY_LISTS}


def start_autoscaling_head(head_cpus: int, workers: dict[str, dict[str, Any]], *,
                           head_resources: dict[str, float] | None = None, idle_timeout_minutes: float = 1.0,
                           timeout: float = 180) -> LocalHead:
    """Start a private head with ``head_cpus`` CPUs (plus ``head_resources``) whose fake autoscaler adds nodes
    of the ``workers`` types on demand. Stop it with ``head.stop()``/``head.cleanup()``: the worker raylets
    it launched go with it."""
    root = Path(tempfile.mkdtemp(prefix="ra-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    port = free_port()
    config = fake_cluster_config({"CPU": head_cpus, **(head_resources or {})}, workers, f"127.0.0.1:{port}",
                                 idle_timeout_minutes)
    config_file = root / "autoscaling.json"
    config_file.write_text(json.dumps(config))
    args = [f"--autoscaling-config={config_file}"]
    if head_resources:
        args.append(f"--resources={json.dumps(head_resources)}")
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    return start_local_head(num_cpus=head_cpus, timeout=timeout, root=root, gcs_port=port,
                            extra_args=tuple(args), extra_env=env)


def main() -> int:
    """Start a demo autoscaling head, print its address, stop it (only it) on Ctrl-C."""
    head = start_autoscaling_head(1, {"trial": {"resources": {"CPU": 1, "trial_slot": 1,
                                                              "object_store_memory": 200 * 1024 ** 2},
                                                "max_workers": 3}})
    print(f"head up: GCS {head.gcs_address}, dashboard {head.dashboard_url}, token {head.root / 'auth_token'}")
    print(f"  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={head.root / 'auth_token'} .venv/bin/rethink-audio sweep "
          f"PLAN --address {head.gcs_address}   # a plan with resources: {{custom: {{trial_slot: 1}}}}")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    left = head.stop()
    head.cleanup()
    print("stopped" if not left else f"processes still alive: {sorted(left)}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
