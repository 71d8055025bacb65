"""Configuration is validated by pydantic (strict types, tuple lengths, unions, unknown keys): every bad value
is one ConfigError line that names the key path, never a traceback; good values round-trip unchanged."""

from __future__ import annotations

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.config import AugmentConfig, LossConfig, MaskConfig, OptimConfig, TrialConfig, from_dict, to_dict
from orchestrator.errors import ConfigError
from orchestrator.plan import Plan
from orchestrator.trial import trial_id

BAD_VALUES = [
    # (class, data, where, the whole message or its start)
    (TrialConfig, {"data": "d", "optim": {"epochs": True}}, "", "optim.epochs: input should be a valid integer (got True)"),
    (TrialConfig, {"data": "d", "seed": "1"}, "", "seed: input should be a valid integer (got '1')"),
    (TrialConfig, {"data": "d", "weights": 5}, "", "weights: input should be a valid string (got 5)"),  # a Union
    (TrialConfig, {"data": "d", "valid_fold": 1.5}, "", "valid_fold: input should be a valid integer (got 1.5)"),
    (TrialConfig, {"data": "d", "custom_resources": {"slot": "one"}}, "",
     "custom_resources.slot: input should be a valid number (got 'one')"),
    (TrialConfig, {"data": "d", "mask": {"max_freq": 1.5}}, "", "mask.max_freq: input should be a valid integer"),
    (TrialConfig, {"data": "d", "optim": {"epochz": 3}}, "",
     "unknown key(s) optim.epochz; valid keys: batch_size, epochs, gamma, label_smoothing, lr, milestones,"),
    (TrialConfig, {"optim": {}}, "", "missing key data"),
    (AugmentConfig, {"pitch_semitones": [1]}, "plan.augment", "plan.augment.pitch_semitones: too few values (1 given)"),
    (AugmentConfig, {"stretch_range": [0.9, 1.0, 1.2]}, "plan.augment",
     "plan.augment.stretch_range: tuple should have at most 2 items"),
    (OptimConfig, {"lr": 0}, "plan.optim", "plan.optim.lr must be > 0, got 0.0"),  # the class's own check
    (LossConfig, {"name": "focal"}, "plan.loss", "plan.loss.name must be one of ('ce', 'hybrid'), got 'focal'"),
    (MaskConfig, {"fill": "noise"}, "plan.mask", "plan.mask.fill must be one of ('max', 'zero', 'mean'), got 'noise'"),
    (Plan, {"name": "p", "storage": "s", "datasets": {"fsdd": {"data": "d", "folds": ["2"]}}}, "plan",
     "plan.datasets.fsdd.folds[0]: input should be a valid integer (got '2')"),
    (Plan, {"name": "p", "storage": "s", "datasets": {"fsdd": {"data": "d"}}, "resources": {"gpu_per_worker": 1}}, "plan",
     "unknown key(s) plan.resources.gpu_per_worker; valid keys: cpus_per_worker, custom, gpus_per_worker,"),
]


@pytest.mark.parametrize("cls, data, where, message", BAD_VALUES, ids=[m.split(":")[0][:40] for *_, m in BAD_VALUES])
def test_every_bad_value_is_one_line_naming_its_key(cls, data, where, message):
    with pytest.raises(ConfigError) as error:
        from_dict(cls, data, where=where)
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as error:
        from_dict(TrialConfig, {"data": "d", "seed": True, "optim": {"lr": "fast"}})
    assert str(error.value) == ("seed: input should be a valid integer (got True); "
                                "optim.lr: input should be a valid number (got 'fast')")
    # a class's own check does not hide the type problems of other sections
    with pytest.raises(ConfigError) as error:
        from_dict(TrialConfig, {"data": "d", "seed": "x", "optim": {"lr": -1}, "mask": {"fill": "noise"}})
    assert str(error.value) == ("seed: input should be a valid integer (got 'x'); optim.lr must be > 0, got -1.0; "
                                "mask.fill must be one of ('max', 'zero', 'mean'), got 'noise'")


def test_only_the_config_classes_own_checks_are_value_errors():
    """pydantic collects a check that raises a ValueError with the other problems; ConfigError itself is not
    one, so code that catches ValueError elsewhere (a query parser, storage) never swallows a user error."""
    from orchestrator.errors import ConfigValueError

    assert issubclass(ConfigValueError, (ConfigError, ValueError)) and not issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigValueError):
        OptimConfig(lr=0)


def test_good_values_round_trip_and_keep_their_trial_id():
    cfg = TrialConfig(data="d", fold=3, optim=OptimConfig.preset("soundclr", epochs=5), loss=LossConfig(name="hybrid"),
                      mask=MaskConfig(), custom_resources={"slot": 1.0})
    again = from_dict(TrialConfig, to_dict(cfg))  # lists in JSON fill tuples again; ints fill floats
    assert again == cfg and trial_id(again) == trial_id(cfg)
    assert from_dict(OptimConfig, {"lr": 1, "milestones": [3, 5]}) == OptimConfig(lr=1.0, milestones=(3, 5))


def test_a_bad_plan_value_is_one_line_from_the_cli(tmp_path, capsys, fsdd_root):
    """Before: ``pitch_semitones: [1]`` ended in an IndexError traceback."""
    plan = {"name": "bad", "storage": str(tmp_path / "store"), "models": ["efficientnet_lite0"],
            "inits": ["pretrained"], "seeds": [0], "optim": {"epochs": 2},
            "datasets": {"fsdd": {"preprocess": {"dataset": "fsdd", "root": str(fsdd_root),
                                                 "augment": {"copies": 1, "pitch_semitones": [1]}}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(plan))
    assert main(["sweep", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {tmp_path / 'bad.yaml'}: 1 problem: "
                   "plan.datasets.fsdd.preprocess.augment.pitch_semitones: too few values (1 given)\n")
    assert not (tmp_path / "store").exists()  # nothing started, nothing written
