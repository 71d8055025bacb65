"""``--where`` cannot run code: code-execution payloads are rejected with no side effect; the allowed
language (columns, literals, comparisons, ranges, in, and/or/not) gives the same rows as pandas."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.query import run_query
from analysis.safe_query import QueryError, select_rows
from orchestrator.errors import ConfigError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "model": ["resnet18", "resnet18", "densenet201", "densenet201", "resnet18"],
        "init": ["pretrained", "random", "pretrained", "random", "fusion:2"],
        "seed": [0, 1, 2, 3, 4],
        "valid_selected": [0.5, 0.6, 0.7, None, 0.9],
        "init_k": pd.array([None, None, None, None, 2], dtype="Int64"),
        "mask": [False, True, False, True, False],
    })


def payloads(marker: str) -> list[str]:
    """Known ways to run code through pandas ``query``/``eval`` and numexpr, each creating ``marker``."""
    shell = f"touch {marker}"
    return [
        f"@pd.io.common.os.system('{shell}') == 0 or seed >= 0",
        f"seed >= 0 or @pd.io.common.os.system('{shell}') == 0",
        f"__import__('os').system('{shell}') == 0",
        f"seed == __import__('os').system('{shell}')",
        f"model.__class__.__mro__[-1].__subclasses__() == 0",
        f"seed.__class__.__init__.__globals__['os'].system('{shell}') == 0",
        f"(lambda: __import__('os').system('{shell}'))() == 0",
        f"[c for c in ().__class__.__base__.__subclasses__()] == 0",
        f"pd.eval(\"__import__('os').system('{shell}')\") == 0",
        f"exec(\"import os; os.system('{shell}')\") == None",
        f"eval(\"__import__('os').system('{shell}')\") == 0",
        f"getattr(__import__('os'), 'system')('{shell}') == 0",
        f"open('{marker}', 'w') == None",
        "model.str.len() > 0",
        "seed[0] == 1",
        "where(seed > 0, 1, 0) > 0",  # numexpr functions are calls too
        "sin(seed) > 0",
        "seed + 1 > 2",
        "(x := 1) == 1",
        "model == f'{1}'",
        "seed if True else model",
        "{'a': 1} == model",
        "model in @lst",
        "seed == @__builtins__",
        "`seed` > 0",
        "seed > 0; import os",
        "import os",
        "seed == ...",
        "model == b'x'",
        "__class__ == 1",
        "seed is None",
    ]


def test_code_payloads_are_rejected_with_no_side_effect(frame, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned.txt"
    for where in payloads(str(marker)):
        with pytest.raises(QueryError) as error:
            select_rows(frame, where)
        message = str(error.value)
        assert "Allowed: column names" in message and "Columns: model, init" in message, where
        assert "\n" not in message, where
        assert not marker.exists(), f"{where!r} ran code"
    assert list(tmp_path.iterdir()) == []


def test_query_error_is_a_config_error_naming_the_part(frame):
    with pytest.raises(ConfigError, match=r"'model\.str\.len\(\)' is not allowed here"):
        select_rows(frame, "model.str.len() > 0")
    with pytest.raises(QueryError, match="'@name' references are not allowed"):
        select_rows(frame, "@pd.io.common.os.system('id') == 0 or seed >= 0")
    with pytest.raises(QueryError, match="unknown column 'nope'"):
        select_rows(frame, "nope == 1")
    with pytest.raises(QueryError, match="not a valid filter"):
        select_rows(frame, "init ===")
    with pytest.raises(QueryError, match="holds numbers but is compared with the text 'a'"):
        select_rows(frame, "seed == 'a'")
    with pytest.raises(QueryError, match="holds text but is compared with the number 3"):
        select_rows(frame, "model in [3]")
    with pytest.raises(QueryError, match="longer than 2000"):
        select_rows(frame, "seed == 1 or " * 300 + "seed == 2")


@pytest.mark.parametrize("where", [
    "model == 'resnet18' and seed < 3",
    "model == 'resnet18' & seed < 3",
    "1 <= seed < 4",
    "4 > seed >= 1",
    "init in ['pretrained', 'fusion:2']",
    "init not in ('random',)",
    "not (model == 'resnet18') or seed == 4",
    "~(seed > 2) | (init == 'random')",
    "valid_selected >= 0.6",
    "seed != 2 and valid_selected > -1.5",
    "mask",
    "not mask",
    "init_k == 2",
    "model < 'e'",
    "init == \"random\"",
    "model == 'a@b & c'",
])
def test_allowed_filters_match_pandas_query(frame, where):
    expected = frame.query(where.replace("not mask", "~mask"), engine="python")
    pd.testing.assert_frame_equal(select_rows(frame, where), expected)


def test_none_means_missing_and_blank_means_all(frame):
    assert select_rows(frame, "valid_selected == None")["seed"].tolist() == [3]
    assert select_rows(frame, "init_k != None")["seed"].tolist() == [4]
    assert len(select_rows(frame, "  ")) == len(select_rows(frame, None)) == 5


def test_run_query_uses_the_safe_filter(tmp_path, monkeypatch):
    import records_fixture as F

    data = F.write_dataset(tmp_path / "ds")
    F.write_trial(tmp_path / "results" / "trials", data, valid=[0.5], test=[0.6], seed=0)
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned.txt"
    with pytest.raises(QueryError):
        run_query(str(tmp_path / "results"), f"@pd.io.common.os.system('id > {marker}') == 0 or seed >= 0")
    assert not marker.exists()
    assert "| 0 |" in run_query(str(tmp_path / "results"), "seed >= 0")
