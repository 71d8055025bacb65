"""``run_query`` against direct pandas computations, the CLI subcommands, and results on S3 (moto)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pandas as pd
import pytest

import records_fixture as F
from analysis.cli import register
from analysis.collect import load_results
from analysis.query import run_query
from orchestrator.errors import ConfigError, RethinkError, StorageError


def small_sweep(base: Path) -> str:
    """resnet18 and densenet201, pretrained and random, seeds 0-2 on fold 1 and 2: 24 trials."""
    data = F.write_dataset(base / "ds")
    trials = base / "results" / "trials"
    for i, (model, init, seed, fold) in enumerate((m, i, s, f) for m in ("resnet18", "densenet201")
                                                  for i in ("pretrained", "random") for s in range(3) for f in (1, 2)):
        test = [0.5, 0.5 + 0.05 * (i % 7), 0.55]
        F.write_trial(trials, data, valid=[0.5, 0.6, 0.4 + 0.1 * (i % 3)], test=test, model=model, init=init,
                      seed=seed, fold=fold)
    return str(base / "results")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    return small_sweep(tmp_path_factory.mktemp("query"))


def test_grouped_query_matches_pandas(sweep):
    results = load_results(sweep)
    where = "init == 'pretrained' and seed < 2"
    got = pd.DataFrame(json.loads(run_query(sweep, where, ["model", "fold"], "best_epoch", "json")))
    expected = (results.query(where).groupby(["model", "fold"])["best_epoch"]
                .agg(["mean", "std", "count"]).reset_index())
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-12, rtol=0)
    assert got["count"].tolist() == [2, 2, 2, 2]


def test_default_metric_and_csv_match_pandas(sweep):
    results = load_results(sweep)
    got = pd.read_csv(io.StringIO(run_query(sweep, None, ["model", "init"], None, "csv")))
    expected = results.groupby(["model", "init"])["valid_selected"].agg(["mean", "std", "count"]).reset_index()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-12, rtol=0)


def test_ungrouped_query_lists_the_trials(sweep):
    text = run_query(sweep, "model == 'resnet18' and fold == 2", None, "last_epoch", "md")
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 6 and "| trial_id |" in lines[0] and "last_epoch" in lines[0]
    assert "_no trials match_" in run_query(sweep, "seed > 99", None, None, "md")


def test_query_errors_name_the_fix(sweep):
    with pytest.raises(ConfigError, match="unknown column.*nope.*columns: trial_id"):
        run_query(sweep, None, ["nope"], None, "md")
    with pytest.raises(ConfigError, match="not a valid filter"):
        run_query(sweep, "init ===", None, None, "md")
    with pytest.raises(ConfigError, match="not numeric"):
        run_query(sweep, None, None, "model", "md")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="rethink-audio")
    register(main.add_subparsers(dest="command", required=True))
    return main


def test_cli_query_and_tables_subcommands(sweep, tmp_path, capsys):
    args = parser().parse_args(["query", "--results", sweep, "--group-by", "model", "--format", "json"])
    assert args.handler(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["densenet201", "resnet18"] and rows[0]["count"] == 12
    args = parser().parse_args(["tables", "--results", sweep, "--out", str(tmp_path / "out"), "--no-svcca",
                                "--no-ig"])
    assert args.handler(args) == 0
    assert "24 finished trials" in capsys.readouterr().out and (tmp_path / "out" / "report.html").is_file()
    args = parser().parse_args(["query", "--results", str(tmp_path / "nothing-here")])
    with pytest.raises(StorageError, match="nothing-here.*pass the results root") as error:
        args.handler(args)
    assert isinstance(error.value, RethinkError)


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on loopback, with the environment pointing pyarrow and boto3 at it."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for var, value in [("AWS_ENDPOINT_URL", f"http://{host}:{port}"), ("AWS_ACCESS_KEY_ID", "testing"),
                       ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1"),
                       ("AWS_EC2_METADATA_DISABLED", "true")]:
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield
    server.stop()


def test_results_on_s3(s3, tmp_path):
    import boto3

    data = F.write_dataset(tmp_path / "ds")
    local = tmp_path / "plan"
    for seed in (0, 1):
        F.write_trial(local / "trials", data, valid=[0.5, 0.6], test=[0.6, 0.7 + 0.1 * seed], seed=seed)
    F.write_trial(local / "trials", data, valid=[0.5], test=[0.5], seed=9, finished=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket="sweeps")
    for path in local.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "sweeps", f"study/{path.relative_to(local)}")
    results = load_results("s3://sweeps/study")
    expected = load_results(str(local), write=False)
    pd.testing.assert_frame_equal(results, expected)
    assert len(results) == 2 and len(results.attrs["skipped"]) == 1
    assert "results.parquet" in [o["Key"].rsplit("/", 1)[-1] for o in client.list_objects_v2(
        Bucket="sweeps", Prefix="study/")["Contents"]]
    got = json.loads(run_query("s3://sweeps/study", None, ["model"], "best_epoch", "json"))
    assert got == [{"model": "densenet201", "mean": pytest.approx(0.75), "std": pytest.approx(0.0707106781),
                    "count": 2}]
    from analysis.report import build_report

    written = build_report("s3://sweeps/study", "s3://sweeps/report", svcca=False, attribution=False)
    assert written["report_html"] == "s3://sweeps/report/report.html"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="sweeps", Prefix="report/")["Contents"]}
    assert {"report/report.md", "report/tables/table1_pretrained_vs_random.csv",
            "report/figures/learning_curves.png"} <= keys
