"""Offline checks of a Ray cluster-launcher YAML, before ``ray up`` spends anything.

    python cluster/validate.py cluster/aws-gpu.yaml

1. Ray's own validation: ``prepare_config`` (fills the provider defaults, as ``ray up`` does) then
   ``validate_config`` (Ray's JSON schema: unknown keys and wrong types are errors, plus its cross-field
   checks). Both live in the *private* module ``ray.autoscaler._private.util``; :func:`ray_validate`
   wraps them so a future Ray that moves them fails with a message saying so, not an ImportError. No cloud
   API is called (``ray up`` would call EC2 next; this stops before).
2. This project's security rules (:func:`security_problems`): token auth on every node, the dashboard
   bound to 127.0.0.1 on the head, no credentials in the file.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# Shapes of credentials that must never be committed: an AWS access key id (long-term AKIA / temporary ASIA),
# a private key, a 40-character secret access key written as a value.
SECRET_PATTERNS = [re.compile(p) for p in (r"\bAKIA[0-9A-Z]{16}\b", r"\bASIA[0-9A-Z]{16}\b",
                                           r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
                                           r"(?i)aws_secret_access_key\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}\b")]


class ClusterConfigError(ValueError):
    """The cluster YAML is invalid; the message names the key at fault."""


def load(path: str | Path) -> dict[str, Any]:
    """The YAML mapping at ``path``."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ClusterConfigError(f"{path}: cannot read it as YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: a cluster config is a YAML mapping")
    return config


def ray_validate(config: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Ray's ``validate_config(prepare_config(config))``; returns the prepared config.

    Raises ClusterConfigError naming the offending key path for schema errors and Ray's own message for
    the rest (e.g. more min_workers than max_workers).
    """
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as exc:  # private API: say what moved instead of failing obscurely
        import ray

        raise ClusterConfigError(
            f"Ray {ray.__version__} has no ray.autoscaler._private.util.prepare_config/validate_config "
            f"({exc}); this private API moved: update cluster/validate.py to the new location") from None
    import jsonschema

    try:
        prepared = prepare_config(copy.deepcopy(config))
        validate_config(prepared)
    except jsonschema.ValidationError as exc:
        key = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise ClusterConfigError(f"{where}: {key}: {exc.message}") from None
    except (ValueError, KeyError, TypeError, RuntimeError, NotImplementedError, AssertionError) as exc:
        raise ClusterConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    return prepared


def _commands(config: dict[str, Any], key: str) -> str:
    return "\n".join(str(c) for c in config.get(key) or [])


def security_problems(config: dict[str, Any], text: str = "") -> list[str]:
    """This project's rules for a cluster config; an empty list when it follows them all."""
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        if "RAY_AUTH_MODE=token" not in _commands(config, key):
            problems.append(f"{key}: must start Ray with RAY_AUTH_MODE=token (token auth on every node)")
    head = _commands(config, "head_start_ray_commands")
    if "--dashboard-host=127.0.0.1" not in head:
        problems.append("head_start_ray_commands: the dashboard must bind to 127.0.0.1 "
                        "(--dashboard-host=127.0.0.1); reach it through `ray dashboard` (SSH tunnel)")
    mounts = config.get("file_mounts") or {}
    if not any(str(remote).endswith(".ray/auth_token") for remote in mounts):
        problems.append("file_mounts: mount the Ray token (~/.ray/auth_token) on every node")
    for pattern in SECRET_PATTERNS:
        if pattern.search(text or yaml.safe_dump(config)):
            problems.append(f"the file contains something shaped like a credential ({pattern.pattern}); "
                            "use instance profiles / the AWS credential chain instead")
    return problems


def check(path: str | Path) -> dict[str, Any]:
    """Both checks on the file at ``path``; returns Ray's prepared config or raises ClusterConfigError."""
    config = load(path)
    prepared = ray_validate(config, str(path))
    problems = security_problems(config, Path(path).read_text())
    if problems:
        raise ClusterConfigError(f"{path}:\n  " + "\n  ".join(problems))
    return prepared


def main(argv: list[str] | None = None) -> int:
    """Check each file given; print one line per file."""
    paths = (argv if argv is not None else sys.argv[1:]) or [str(Path(__file__).with_name("aws-gpu.yaml"))]
    status = 0
    for path in paths:
        try:
            prepared = check(path)
        except ClusterConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        types = ", ".join(f"{name} ({t.get('min_workers', 0)}-{t.get('max_workers', 0)})"
                          for name, t in prepared["available_node_types"].items())
        print(f"ok: {path}: {types}; max_workers {prepared['max_workers']}")
    return status


if __name__ == "__main__":
    sys.exit(main())
