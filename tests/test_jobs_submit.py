"""Job submission end to end on a private head: token auth on, every port on 127.0.0.1, S3 on loopback.

One module fixture does the expensive part once: it starts moto and a token-authenticated head whose
environment carries fake AWS credentials (as an instance role would provide them), submits

1. ``python -m jobs.sweep plans/demo.yaml --smoke --storage s3://bucket/runs`` with jobs/runtime_env.yaml
   (working dir upload): the demo plan's dataset is preprocessed into S3 and both trials write their Tune
   state, Train checkpoints and records there;
2. ``python -m jobs.paper`` on the same plan: preprocess, search and grid are skipped (their outputs
   exist), the tables are built into S3;

records what the tests below check, and stops exactly that head (never ``ray stop``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
import yaml
from s3_fixture import FOREIGN_AWS, REPO, S3Endpoint, files_under, find_secrets, moto_server

from cluster.local_head import is_loopback, listening_addresses, pids_mentioning, session_pids, start_local_head


BUCKET = "bucket"
STORAGE = f"s3://{BUCKET}/runs"
ROOT_KEY = "runs/demo-smoke/"
JOB_TIMEOUT = 480


@dataclass
class Submitted:
    """Everything the module's tests look at, gathered while the head was up."""

    s3: S3Endpoint
    token: str
    statuses: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    job_infos: dict[str, str] = field(default_factory=dict)
    anonymous: int = 0
    wrong_token: int = 0
    uploaded: list[str] = field(default_factory=list)
    sockets: list = field(default_factory=list)
    ray_files: dict[str, bytes] = field(default_factory=dict)
    leftovers: set[int] = field(default_factory=set)


def http_status(url: str, headers: dict[str, str]) -> int:
    """HTTP status of a GET (error statuses included, not raised)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def run_job(client, entrypoint: str, runtime_env: dict) -> tuple[str, str, str]:
    """Submit, wait for a terminal state; returns (status, logs, job info as JSON)."""
    job = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    deadline = time.time() + JOB_TIMEOUT
    while str(client.get_job_status(job)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        if time.time() > deadline:
            client.stop_job(job)
            break
        time.sleep(0.5)
    info = client.get_job_info(job)
    return str(info.status), client.get_job_logs(job), json.dumps(info.dict(), default=str)


@pytest.fixture(scope="module")
def submitted():
    """Moto + a private head, both jobs run, facts gathered, head stopped; moto stays up for read-backs."""
    with moto_server() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_AWS} | s3.env() | {
            "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
        head = start_local_head(num_cpus=1, env=env)  # one trial, one Ray Data worker at a time: 2 cores
        record = Submitted(s3, head.token)
        try:
            jobs_api = f"{head.dashboard_url}/api/jobs/"
            record.anonymous = http_status(jobs_api, {})
            record.wrong_token = http_status(jobs_api, {"Authorization": "Bearer not-the-token"})
            runtime_env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
            runtime_env["working_dir"] = str(REPO)  # the file says "." = where `ray job submit` runs
            client = head.client()
            for name in ("sweep", "paper"):
                entrypoint = f"python -m jobs.{name} plans/demo.yaml --smoke --storage {STORAGE}"
                record.statuses[name], record.logs[name], record.job_infos[name] = run_job(
                    client, entrypoint, runtime_env)
                if record.statuses[name] != "SUCCEEDED":
                    break
            record.sockets = listening_addresses(head.pids())
            packages = [p for p in head.temp_dir.glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*")
                        if p.is_dir()]  # the unpacked working dir (next to its .zip.lock)
            record.uploaded = sorted(p.name for p in packages[0].iterdir()) if packages else []
        finally:
            record.leftovers = head.stop()
            record.leftovers |= session_pids(head.process.pid) | pids_mentioning(str(head.root))
            record.ray_files = files_under(head.temp_dir)  # every log of every Ray process of the head
            head.cleanup()
        yield record


@pytest.fixture
def s3_env(submitted, monkeypatch):
    """This process pointed at the module's moto server, to read results back with the project's readers."""
    for name in FOREIGN_AWS:
        monkeypatch.delenv(name, raising=False)
    for name, value in submitted.s3.env().items():
        monkeypatch.setenv(name, value)
    return submitted.s3


def last_json(logs: str) -> dict:
    """The job's final one-line JSON summary."""
    return json.loads([line for line in logs.splitlines() if line.startswith("{")][-1])


def test_jobs_api_requires_the_token(submitted):
    assert submitted.anonymous == 401 and submitted.wrong_token == 403


def test_sweep_job_succeeds_with_results_in_s3(submitted, s3_env):
    from orchestrator import spectra
    from orchestrator.trial import read_summary

    logs = submitted.logs["sweep"]
    assert submitted.statuses["sweep"] == "SUCCEEDED", logs[-4000:]
    assert f"[sweep] plan demo-smoke: results -> {STORAGE}/demo-smoke" in logs
    assert "joined the Ray cluster at 127.0.0.1:" in logs  # RAY_ADDRESS from the job supervisor
    summary = last_json(logs)
    assert summary["trials"] == summary["finished"] == 2 and summary["failed"] == []
    keys = set(s3_env.objects(BUCKET, ROOT_KEY))
    (card,) = [k for k in keys if k.endswith("/dataset.json")]
    data_uri = f"s3://{BUCKET}/{card.rsplit('/', 1)[0]}"
    assert spectra.read_card(data_uri)["counts"]["total"] == 600
    assert spectra.read_table(data_uri, folds=[1], columns=["clip_id"]).num_rows == 100
    trials = sorted({k.split("/")[3] for k in keys if k.startswith(ROOT_KEY + "trials/") and k.count("/") > 3})
    assert len(trials) == 2 and {t.split("-")[1] for t in trials} == {"pretrained", "random"}
    for trial in trials:
        assert read_summary(f"{STORAGE}/demo-smoke/trials", trial)["epochs"] == 1
        assert f"{ROOT_KEY}trials/{trial}/checkpoint.pt" in keys
        assert f"{ROOT_KEY}grid/{trial}/result.json" in keys
    assert any(k.startswith(ROOT_KEY + "grid/experiment_state") for k in keys)


def test_paper_job_skips_finished_stages_and_builds_the_tables(submitted, s3_env):
    logs = submitted.logs["paper"]
    assert submitted.statuses["paper"] == "SUCCEEDED", logs[-4000:]
    for stage in ("preprocess", "search", "grid"):
        assert f"[run] stage {stage} skipped" in logs
    summary = last_json(logs)
    assert summary["stages"]["grid"] == "skipped" and summary["finished"] == 2
    keys = set(s3_env.objects(BUCKET, ROOT_KEY + "report/"))
    try:
        import analysis.report  # noqa: F401
    except ImportError:
        assert summary["stages"]["tables"] == "unavailable" and "analysis.report" in logs
        return
    assert summary["stages"]["tables"] == "ran"
    assert {ROOT_KEY + "report/report.md", ROOT_KEY + "report/report.html"} <= keys
    assert any(k.startswith(ROOT_KEY + "report/tables/") and k.endswith(".csv") for k in keys)


def test_no_secret_in_job_logs_job_info_ray_logs_or_stored_records(submitted):
    secrets = submitted.s3.secrets + [submitted.token]
    texts = {f"logs of {n}": v.encode() for n, v in submitted.logs.items()}
    texts |= {f"job info of {n}": v.encode() for n, v in submitted.job_infos.items()}
    assert find_secrets(secrets, texts) == []
    assert find_secrets(secrets, {f"ray: {k}": v for k, v in submitted.ray_files.items()}) == []
    stored = submitted.s3.objects(BUCKET)  # plan.json, dataset.json, config.json, Tune state, pickles as bytes
    assert {ROOT_KEY + "plan.json", ROOT_KEY + "search/best.json"} <= set(stored)
    assert find_secrets(secrets, stored) == []


def test_working_dir_upload_is_the_code_without_environments_or_results(submitted):
    assert {"jobs", "orchestrator", "analysis", "plans", "data"} <= set(submitted.uploaded)
    assert not {".venv", ".git", "runs", "tests", "benchmarks"} & set(submitted.uploaded)


def test_head_listened_on_loopback_only_and_left_no_process(submitted):
    assert submitted.sockets, "found no listening socket: the /proc inspection is broken"
    assert [s for s in submitted.sockets if not is_loopback(s[1])] == []
    assert submitted.leftovers == set()
