"""Cluster configs, offline: the AWS launcher YAML against Ray's own validator (no cloud call), the KubeRay
RayJob and the jobs' runtime env against what the docs promise, token auth everywhere, no secret anywhere."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import ray
import yaml
from s3_fixture import REPO

from cluster import validate


AWS = REPO / "cluster" / "aws-gpu.yaml"
RAYJOB = REPO / "cluster" / "rayjob.yaml"
RUNTIME_ENV = REPO / "jobs" / "runtime_env.yaml"


@pytest.fixture
def aws() -> dict:
    """The AWS launcher config as written (before Ray fills in defaults)."""
    return validate.load(AWS)


def test_aws_config_passes_rays_validator_and_our_rules(aws):
    prepared = validate.check(AWS)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["max_workers"] == 0 and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    shapes = {t["node_config"]["InstanceType"] for t in gpu.values()}
    assert shapes == {"g5.xlarge", "g5.12xlarge"}  # 1 A10G, and 4 in one node for DDP trials
    for shape in shapes:
        kinds = {name: t for name, t in gpu.items() if t["node_config"]["InstanceType"] == shape}
        spot = [t for t in kinds.values() if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
        ondemand = [t for t in kinds.values() if "InstanceMarketOptions" not in t["node_config"]]
        assert len(spot) == len(ondemand) == 1 and spot[0]["priority"] > ondemand[0]["priority"]
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in gpu.values())
    assert prepared["idle_timeout_minutes"] > 0 and prepared["max_workers"] >= max(t["max_workers"] for t in gpu.values())
    setup = "\n".join(prepared["setup_commands"])
    assert "constraints.txt" in setup and "-e ~/rethink-audio" in setup  # the project and its lock on every node
    assert "RAY_enable_autoscaler_v2=1" in "\n".join(prepared["head_start_ray_commands"])


@pytest.mark.parametrize("edit, named", [
    (lambda c: c.update(max_worker=3), "max_worker"),                                       # unknown key
    (lambda c: c["available_node_types"]["gpu1-spot"].update(min_worker=1), "min_worker"),  # nested unknown key
    (lambda c: c.update(max_workers="sixteen"), "max_workers"),                             # wrong type
    (lambda c: c["available_node_types"]["gpu1-spot"].update(resources={"GPU": 0.5}), "GPU"),  # wrong type
])
def test_rays_validator_catches_unknown_keys_and_wrong_types(aws, edit, named):
    edit(aws)
    with pytest.raises(validate.ClusterConfigError) as error:
        validate.ray_validate(aws, "aws-gpu.yaml")
    assert named in str(error.value) and "aws-gpu.yaml" in str(error.value)


def test_rays_cross_field_checks_are_reported(aws):
    aws["available_node_types"]["gpu1-spot"]["min_workers"] = 100
    with pytest.raises(validate.ClusterConfigError, match="max_workers"):
        validate.ray_validate(aws)


def test_a_ray_without_the_private_validator_gets_a_clear_error(aws, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.autoscaler._private.util", None)  # what a moved module looks like
    with pytest.raises(validate.ClusterConfigError, match="private API moved"):
        validate.ray_validate(aws)


def test_security_rules_reject_a_config_without_token_auth_or_with_an_open_dashboard(aws):
    insecure = copy.deepcopy(aws)
    insecure["worker_start_ray_commands"] = [c.replace("RAY_AUTH_MODE=token", "")
                                             for c in insecure["worker_start_ray_commands"]]
    insecure["head_start_ray_commands"] = [c.replace("127.0.0.1", "0.0.0.0")
                                           for c in insecure["head_start_ray_commands"]]
    del insecure["file_mounts"]["~/.ray/auth_token"]
    problems = "\n".join(validate.security_problems(insecure))
    assert "worker_start_ray_commands" in problems and "dashboard" in problems and "auth_token" in problems
    key_id, secret = "AKIA" + "Q" * 16, "s" * 40  # credential-shaped, built here so this file holds none
    assert validate.security_problems(aws, f"aws_access_key_id: {key_id}")
    assert validate.security_problems(aws, f"aws_secret_access_key = {secret}")
    assert validate.security_problems(aws, "aws_secret_access_key=self.secret_key") == []  # code, not a value


def test_validate_cli(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(AWS.read_text().replace("idle_timeout_minutes: 10", "idle_timeout_minutes: ten"))
    done = subprocess.run([sys.executable, "cluster/validate.py", str(AWS), str(broken)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"ok: {AWS}" in done.stdout and "idle_timeout_minutes" in done.stderr


def test_rayjob_manifest_runs_the_paper_job_with_token_auth_on_gpu_groups():
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    python, flag, module, plan = spec["entrypoint"].split()[:4]
    assert (python, flag, module) == ("python", "-m", "jobs.paper") and plan.endswith("plans/paper.yaml")
    assert (REPO / "jobs" / "paper.py").is_file() and (REPO / "plans" / "paper.yaml").is_file()
    assert spec["shutdownAfterJobFinishes"] is True and spec["activeDeadlineSeconds"] > 0
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token" and cluster["authOptions"]["secretName"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    gpus = {}
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        gpus[group["groupName"]] = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
        assert container["image"] == cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert sorted(gpus.values()) == [1, 4]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert not any(k.startswith("AWS_") for k in runtime_env.get("env_vars", {}))
    dockerfile = (REPO / "cluster" / "Dockerfile").read_text()
    assert "constraints.txt" in dockerfile and "/home/ray/rethink-audio" in dockerfile
    # the package is installed with jobs/ in place, so `python -m jobs.paper` imports from any directory
    assert dockerfile.index("COPY --chown=ray:users jobs") < dockerfile.index("pip install")


def test_runtime_env_is_valid_for_ray_and_carries_no_credentials():
    from ray.runtime_env import RuntimeEnv

    raw = yaml.safe_load(RUNTIME_ENV.read_text())
    RuntimeEnv(**raw)  # Ray's own validation of the fields
    assert raw["working_dir"] == "." and "pip" not in raw and "conda" not in raw  # deps come with the nodes
    assert {"/.venv", "/.git", "/runs"} <= set(raw["excludes"]) and "!/data/fsdd-mini" in raw["excludes"]
    assert not any(k.startswith("AWS_") or "TOKEN" in k for k in raw.get("env_vars", {}))


def test_no_credentials_in_the_repository():
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    texts = [p for p in listed if (REPO / p).is_file() and not p.startswith("data/")]
    found = []
    for path in texts:
        text = (REPO / path).read_text(errors="ignore")
        found += [f"{path}: {p.pattern}" for p in validate.SECRET_PATTERNS if p.search(text)]
    assert found == []
