"""Command line: ``rethink-audio preprocess | train | plan | sweep | run | tables | query | demo``.

Errors the user can fix (``RethinkError``) are printed as one message with exit status 2, never as a bare
traceback; ``--json`` prints a one-line JSON summary on stdout (logs go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from analysis.cli import register as register_analysis
from orchestrator.config import (AUGMENTED_MODES, FEATURE_KINDS, FEATURE_VARIANTS, MEL_SCALES, NUM_CHANNELS,
                                 SCHEDULE_PRESETS, STANDARDIZE_MODES, AugmentConfig, FeatureConfig)
from orchestrator.errors import ConfigError, RethinkError, user_message
from orchestrator.study import SPLIT_MODES


class LeaseLost(RethinkError):
    """This driver's lease on its results root was taken over while it ran."""

DEFAULT_MAX_GPU_HOURS = 10.0  # a run estimated above this many GPU-hours asks first (never starts unasked)
REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_FSDD = REPO_ROOT / "data" / "fsdd-mini"


def _add_preprocess(sub) -> None:
    p = sub.add_parser("preprocess", help="audio folder -> Parquet log-mel dataset (Ray Data)")
    p.add_argument("--dataset", required=True, help="esc50, esc10, us8k, gtzan, fsdd or folder")
    p.add_argument("--root", required=True, help="dataset folder in its official layout")
    p.add_argument("--out", required=True, help="output root: local path or s3://bucket/prefix")
    p.add_argument("--features", default="paper3ch", choices=FEATURE_VARIANTS,
                   help="paper3ch: 3 window/hop pairs (default); mono3x: 25/10 ms replicated")
    p.add_argument("--mel-scale", default="htk", choices=MEL_SCALES,
                   help="htk: the paper's torchaudio mel spectrogram (default); slaney: the earlier librosa "
                        "recipe, which finds dataset versions built before htk became the default")
    p.add_argument("--kind", default="logmel", choices=FEATURE_KINDS,
                   help="what each channel holds: log-mel (the paper, default), log spectrogram, MFCC, gammatone")
    p.add_argument("--num-channels", type=int, default=3, choices=NUM_CHANNELS,
                   help="3: one per window/hop pair (default); 1: the 25 ms / 10 ms pair only")
    p.add_argument("--n-mfcc", type=int, default=40, help="MFCC coefficients kept with --kind mfcc (default 40)")
    p.add_argument("--augment-copies", type=int, default=0, help="K pitch/stretch copies per clip (default 0)")
    p.add_argument("--augment-seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None, help="time-axis size (default 250; GTZAN 1500)")
    p.add_argument("--height", type=int, default=128, help="mel-axis size after resize (default 128)")
    p.add_argument("--sample-rate", type=int, default=None, help="default: the dataset's (ESC-50 44100, ...)")
    p.add_argument("--folds", type=int, default=None, help="GTZAN/folder: number of seeded folds (default 5)")
    p.add_argument("--seed", type=int, default=None, help="GTZAN/folder: fold assignment seed (default 0)")
    p.add_argument("--strict", action="store_true", help="fail if any file is rejected")
    p.add_argument("--smoke", action="store_true",
                   help="32x32 features, at most one augmented copy per clip: the dataset a plan's --smoke uses")
    p.add_argument("--max-duration", type=float, default=600.0, metavar="SECONDS",
                   help="reject clips longer than this (default 600 = 10 minutes)")
    p.add_argument("--workers", type=int, default=None, help="featurizer tasks at once (default: all CPUs)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="one trial (model, init, fold, seed): in this process, or on Ray with "
                                     "--address / RAY_ADDRESS or --workers > 1")
    p.add_argument("--data", required=True, help="dataset version folder printed by `preprocess`")
    p.add_argument("--model", default="efficientnet_lite0", help="see orchestrator.models.list_models()")
    p.add_argument("--init", default="pretrained", help="pretrained | random | fusion:K | freeze:K | cutoff:K")
    p.add_argument("--weights", default=None, help="ImageNet weights file or s3:// URI (torchvision models)")
    p.add_argument("--fold", type=int, required=True, help="test fold")
    p.add_argument("--valid-fold", type=int, default=None, help="default: the fold after the test fold")
    p.add_argument("--split", default="nested", choices=SPLIT_MODES,
                   help="nested: train / a whole valid fold / test (valid_selected); paper: train on every fold "
                        "but the test fold, no valid fold (the paper's protocol; best_epoch and last_epoch only)")
    p.add_argument("--augmented", default="draw", choices=AUGMENTED_MODES,
                   help="the dataset's augmented copies: draw one per clip afresh each epoch (the paper), use "
                        "all every epoch, or none")
    p.add_argument("--standardize", nargs="?", const="channel", default="none", choices=STANDARDIZE_MODES,
                   help="standardise the inputs with the training folds' mean/std per channel (--standardize "
                        "alone) or per mel band (--standardize band); none: as they are (the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", default="paper", choices=list(SCHEDULE_PRESETS),
                   help="paper: 70 epochs, lr x0.1 every 30; paper-random: 450 epochs, x0.1 at 300, 350; "
                        "soundclr: AdamW 5e-4, batch 128, 800 epochs, 10 warm-up epochs then x0.98 per epoch")
    p.add_argument("--epochs", type=int, default=None, help="override the schedule's epochs")
    p.add_argument("--lr", type=float, default=None, help="default 1e-4 (paper)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (paper)")
    # no argparse choices: LossConfig's own error says why 'supcon' is not a loss and what to use instead
    p.add_argument("--loss", default="ce", help="ce (the paper) | hybrid (SoundCLR: 0.5 SupCon + 0.5 CE)")
    p.add_argument("--mask", action="store_true", help="SoundCLR spectrogram masks (2 freq <= 32, 1 time <= 32)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (DDP)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker, bf16 autocast, channels_last")
    p.add_argument("--max-failures", type=int, default=1,
                   help="restarts by Ray from the last checkpoint on a crash, when the trial runs on Ray; in this "
                        "process a crash ends the command and running it again resumes from the checkpoint")
    p.add_argument("--out", default="runs/trials", help="trials root: local path or s3:// URI")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")


def cmd_train(args) -> int:
    from orchestrator.config import LossConfig, MaskConfig, OptimConfig, TrialConfig

    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size))
                 if v is not None}
    cfg = TrialConfig(
        data=args.data, model=args.model, init=args.init, weights=args.weights, fold=args.fold,
        valid_fold=args.valid_fold, split=args.split, augmented=args.augmented,
        standardize=args.standardize, seed=args.seed, optim=OptimConfig.preset(args.schedule, **overrides),
        loss=LossConfig(name=args.loss), mask=MaskConfig() if args.mask else None,
        num_workers=args.workers, use_gpu=args.gpu,
    )
    summary = _train_interruptibly(cfg, args)
    if args.json:
        print(json.dumps(summary))
    else:
        state = "reused finished trial" if summary["reused"] else "finished trial"
        print(f"{state} {summary['trial_id']} ({summary['epochs']} epochs)")
        for protocol in ("best_epoch", "last_epoch", "valid_selected"):
            if protocol not in summary:  # split "paper": no validation fold, no valid_selected
                continue
            print(f"  test accuracy, {protocol:>14}: {summary[protocol]:.4f} (epoch {summary[protocol + '_epoch']})")
        print(f"  -> {args.out.rstrip('/')}/{summary['trial_id']}")
    return 0


def _train_interruptibly(cfg, args) -> dict:
    """``run_trial`` in this process, where Ctrl-C / SIGTERM makes the trial checkpoint at its next step and
    stop (exit 130 / 143 with the command that resumes it); a second signal stops at once."""
    from orchestrator.interrupts import (INTERRUPTED, DriverSignals, SweepInterrupted, TrialStopped,
                                         clear_process_stop, stop_this_process)
    from orchestrator.trial import run_trial

    def first_signal(signum: int) -> None:
        print("[train] stopping: the trial writes its checkpoint at its next step (send the signal again to stop "
              "at once)", file=sys.stderr, flush=True)
        stop_this_process(INTERRUPTED)

    with DriverSignals(first_signal) as signals:
        try:
            return run_trial(cfg, args.out, max_failures=args.max_failures, ray_address=args.address)
        except TrialStopped as stop:
            raise SweepInterrupted(signals.signum or 2, detail=f"the trial stopped in epoch {stop.epoch} after "
                                   f"{stop.step} step(s), checkpoint written") from None
        finally:
            clear_process_stop()


def _add_sweep(sub) -> None:
    _add_sweep_options(sub.add_parser("sweep", help="a whole experiment plan on Ray Tune (search, then every trial)"))


def _add_sweep_options(p) -> None:
    p.add_argument("plan", help="plan YAML (plans/demo.yaml, plans/paper.yaml, ...)")
    p.add_argument("--storage", default=None, help="override the plan's storage URI (local path or s3://)")
    p.add_argument("--resume", action="store_true",
                   help="go on with an interrupted sweep: finished trials kept, unfinished ones from their checkpoints")
    p.add_argument("--force-unlock", action="store_true",
                   help="break another driver's lease on the results root (only when that driver is gone)")
    p.add_argument("--smoke", action="store_true",
                   help="one seed, one fold, one epoch, 32x32 inputs (80 for Inception), 64 clips: check a plan's "
                        "whole path cheaply (orchestrator.plan.smoke)")
    _add_split_override(p)
    _add_cost_options(p)
    p.add_argument("--max-gpu-hours", type=float, default=DEFAULT_MAX_GPU_HOURS,
                   help=f"ask before a sweep estimated above this many GPU-hours (default {DEFAULT_MAX_GPU_HOURS:g})")
    p.add_argument("--yes", action="store_true", help="run without asking, whatever the cost estimate")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    p.add_argument("--verbose", action="store_true",
                   help="stream Ray's worker logs and Tune's status tables (default: one line per epoch)")
    p.add_argument("--json", action="store_true",
                   help="print a one-line JSON summary on stdout (progress goes to stderr)")


def _add_cost_options(p) -> None:
    p.add_argument("--gpu", default=None, help="GPU kind for the cost preview: a10g, h100, a100, l4 "
                                               "(default: the cluster's GPU, else a10g)")
    p.add_argument("--cluster", default=None, help="cluster file (cluster/aws-gpu.yaml, cluster/rayjob.yaml): "
                                                   "wall time and dollars per GPU instance type")


def _add_plan(sub) -> None:
    p = sub.add_parser("plan", help="cost preview of a plan: trials, samples, GPU-hours, wall time, dollars")
    p.add_argument("plan", help="plan YAML (plans/paper.yaml, ...)")
    p.add_argument("--storage", default=None, help="override the plan's storage URI (not touched here)")
    p.add_argument("--smoke", action="store_true", help="preview the plan as `sweep --smoke` would run it")
    _add_split_override(p)
    _add_cost_options(p)


def cmd_plan(args) -> int:
    """Print the cost preview; nothing runs, no Ray starts, the storage is not touched."""
    from orchestrator.cost import estimate, render
    from orchestrator.plan import load_plan, smoke

    plan = load_plan(args.plan, storage=args.storage)
    plan = _with_split(smoke(plan) if args.smoke else plan, args.split)
    print(render(estimate(plan, gpu=args.gpu, cluster=args.cluster)))
    return 0


def _ask(prompt: str) -> str:
    """One line from the terminal (a seam for tests: they replace it, never the estimate)."""
    return input(prompt)


def confirm_cost(plan, args) -> bool:
    """Print the cost preview (stderr: stdout is for --json) and decide whether the sweep may start: always
    for CPU-only plans, --yes, or an estimate within --max-gpu-hours; otherwise ask y/N on a terminal and
    refuse (ConfigError) without one, so a job or a pipe never hangs on a question nobody sees."""
    from orchestrator.cost import estimate, render

    result = estimate(plan, gpu=args.gpu, cluster=args.cluster)
    print(render(result), file=sys.stderr, flush=True)
    hours = result.gpu_hours
    if not result.uses_gpu or args.yes or (hours is not None and hours <= args.max_gpu_hours):
        return True
    why = (f"an estimated {hours:,.1f} GPU-hours (above --max-gpu-hours {args.max_gpu_hours:g})"
           if hours is not None else "an unknown number of GPU-hours (see the notes above)")
    if not sys.stdin.isatty():
        raise ConfigError(f"plan {plan.name} needs {why} and stdin is not a terminal, so the sweep cannot ask: "
                          "rerun with --yes to start it anyway, or raise --max-gpu-hours")
    return _ask(f"start {result.trials} trials, {why}? [y/N] ").strip().lower() in ("y", "yes")


def _add_split_override(p) -> None:
    p.add_argument("--split", default=None, choices=SPLIT_MODES,
                   help="override the plan's split mode (README 'Protocols'); trials of both modes can share "
                        "one results root: they have different ids and the tables label them")


def _with_split(plan, split: str | None):
    import dataclasses

    return dataclasses.replace(plan, split=split) if split else plan


def _start(plan, args, held: contextlib.ExitStack, *, more_outputs: tuple[str, ...] = ()) -> bool:
    """What ``sweep``, ``run`` and ``demo`` do before any compute: the cost preview (and question), writable storage
    (a wrong bucket fails before Ray starts), the results root's lease (held in ``held``: a second driver
    exits here), Ray (``--address``, else ``RAY_ADDRESS``, else a private local one) and what it offers. False
    when the user declines the cost (nothing started)."""
    import os

    from orchestrator import storage
    from orchestrator.plan_check import check_cluster
    from orchestrator.ray_runtime import ensure_ray
    from orchestrator.sweep import plan_root

    if not confirm_cost(plan, args):  # before any storage or Ray call: nothing has started yet
        print(f"{args.command} cancelled: nothing was started", file=sys.stderr)
        return False
    for uri in (plan.storage, *more_outputs):
        _check_output(storage.resolve(uri))
    held.enter_context(results_lease(plan, args))
    print(f"[{args.command}] plan {plan.name}: results -> {plan_root(plan).uri}", file=sys.stderr, flush=True)
    ensure_ray(args.address, num_cpus=getattr(args, "cpus", None), log_to_driver=args.verbose, quiet=not args.verbose)
    attached = bool(args.address or os.environ.get("RAY_ADDRESS"))
    if attached:
        import ray

        offered = ray.cluster_resources()
        print(f"[{args.command}] joined the Ray cluster at {args.address or os.environ['RAY_ADDRESS']}: "
              f"{int(offered.get('CPU', 0))} CPUs, {int(offered.get('GPU', 0))} GPUs now (an autoscaling cluster "
              "adds nodes as trials ask for them)", file=sys.stderr, flush=True)
    warning = check_cluster(plan, attached=attached)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if attached and not args.verbose:  # on a cluster, say where the output that is not shown went
        print("note: worker logs stay on the nodes (`ray logs`, the dashboard); --verbose streams them here",
              file=sys.stderr)
    return True


@contextlib.contextmanager
def results_lease(plan, args) -> Iterator[None]:
    """Hold the lease on the plan's results root (orchestrator.lease) while the block runs: one driver per
    results root. A second one gets LeaseHeld (exit 2, naming the holder); ``--force-unlock`` breaks a lease
    whose driver is known to be gone. A driver whose lease was taken over says so at the end (exit 2)."""
    from orchestrator.lease import acquire
    from orchestrator.sweep import plan_root

    command = f"{args.command} {getattr(args, 'plan', '')}".strip()
    with acquire(plan_root(plan), command, force=getattr(args, "force_unlock", False)) as lease:
        yield
    if lease.lost:
        raise LeaseLost(f"another driver took over {plan_root(plan).uri} during this run (see the warning above): "
                        "its trials and this one's may have written the same folders; check `rethink-audio query` "
                        "counts, then rerun with --resume")


def _check_output(loc) -> None:
    """The output is writable; on a cluster, a local folder is only on the node running the driver (and a
    job's working dir, which Ray deletes later), so say so."""
    import os

    from orchestrator import storage

    storage.check_writable(loc)
    if not loc.is_s3 and os.environ.get("RAY_ADDRESS"):
        inside = Path(loc.path).resolve().is_relative_to(Path.cwd().resolve())
        print(f"warning: results go to {loc.path} on the node running this driver"
              + (", inside the job's working dir, which Ray deletes later" if inside else "")
              + "; multi-node clusters need shared storage: pass --storage s3://bucket/prefix", file=sys.stderr)


def _load_for_run(args):
    """The plan ``sweep``, ``run`` and ``demo`` run: loaded and checked, shrunk by ``--smoke``, ``--split`` applied."""
    from orchestrator.plan import load_plan, smoke

    plan = load_plan(args.plan, storage=args.storage)  # every plan problem is reported here, before Ray
    return _with_split(smoke(plan) if args.smoke else plan, args.split)


def cmd_sweep(args) -> int:
    """Run a plan: quiet by default (one line per epoch and per trial), --verbose for Ray's own output."""
    from orchestrator.sweep import run_sweep

    plan = _load_for_run(args)
    with contextlib.ExitStack() as held:
        if not _start(plan, args, held):
            return 1
        # --json: stdout carries the summary line alone, so every progress line of the run goes to stderr
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            result = run_sweep(plan, resume=args.resume, ray_address=args.address, quiet=not args.verbose)
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"sweep {'finished' if not result.failed else 'ended with failures'}: "
              f"{result.finished}/{result.trials} trials done, {len(result.failed)} failed, "
              f"{result.seconds / 60:.1f} min")
        for name in result.failed:
            print(f"  failed: {name} (rerun with --resume to retry it; finished trials are kept)")
        print(f"  results: {result.root}")
    return 0 if not result.failed else 1


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="a whole plan: preprocess -> search -> grid -> tables, skipping finished stages")
    _add_sweep_options(p)
    p.add_argument("--report", default=None, help="report folder (default <results>/report; local or s3://)")
    p.add_argument("--no-svcca", action="store_true", help="skip SVCCA (Fig. 2a)")
    p.add_argument("--no-ig", action="store_true", help="skip Integrated Gradients (Fig. 3)")


def cmd_run(args) -> int:
    """The five stages of orchestrator.pipeline; exit status 1 when a trial failed (rerun to retry it)."""
    from orchestrator.pipeline import ReportOptions, run_stages

    plan = _load_for_run(args)
    report = ReportOptions(args.report, svcca=not args.no_svcca, attribution=not args.no_ig)
    with contextlib.ExitStack() as held:
        if not _start(plan, args, held, more_outputs=(args.report,) if args.report else ()):
            return 1
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            summary = run_stages(plan, report, resume=args.resume, quiet=not args.verbose)
    print(json.dumps(summary) if args.json else
          f"run done in {summary['minutes']} min: {summary['finished']}/{summary['trials']} trials finished, "
          f"{len(summary['failed'])} failed; stages {summary['stages']}; report {summary['report']}")
    return 1 if summary["failed"] else 0


def preprocess_request(args):
    """The PreprocessRequest of ``rethink-audio preprocess ARGS`` (``--smoke``: orchestrator.plan.smoke_features)."""
    from orchestrator.plan import smoke_features
    from orchestrator.preprocess import PreprocessRequest

    options = {k: v for k, v in (("folds", args.folds), ("seed", args.seed)) if v is not None}
    settings = {"features": FeatureConfig(variant=args.features, width=args.width, height=args.height,
                                          sample_rate=args.sample_rate, mel_scale=args.mel_scale, kind=args.kind,
                                          num_channels=args.num_channels, n_mfcc=args.n_mfcc),
                "augment": AugmentConfig(copies=args.augment_copies, seed=args.augment_seed)}
    return PreprocessRequest(
        dataset=args.dataset, root=args.root, out=args.out, **(smoke_features(**settings) if args.smoke else settings),
        dataset_options=options, strict=args.strict, num_workers=args.workers, max_duration_s=args.max_duration,
    )


def cmd_preprocess(args) -> int:
    from orchestrator.preprocess import preprocess

    result = preprocess(preprocess_request(args), ray_address=args.address)
    _report(result.summary(), args.json)
    for row in result.card["rejected"]:
        print(f"rejected: {row['path']}: {row['reason']}", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    """The main job on the bundled data: plans/demo.yaml through the stages of ``run`` (the same checks first,
    its cost preview within the default GPU-hour limit), then the paper's two headline tables."""
    from orchestrator.pipeline import ReportOptions, run_stages

    start = time.time()
    plan = _load_for_run(args)
    with contextlib.ExitStack() as held:
        if not _start(plan, args, held):
            return 1
        print(f"[demo] the bundled FSDD subset: {len(plan.seeds)} seeds x {len(plan.inits)} inits x "
              f"{len(plan.datasets['fsdd'].folds[: plan.max_folds or None])} folds on Ray, then ensembles, tables, "
              "SVCCA and Integrated Gradients", flush=True)
        summary = run_stages(plan, ReportOptions(svcca=not args.no_figures, attribution=not args.no_figures),
                             quiet=not args.verbose, say=lambda line: print(f"[demo] {line}", flush=True))
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} trial(s) failed: {summary['failed']}; rerun `make demo` to retry "
              "them (finished trials are kept)", file=sys.stderr)
        return 1
    print(headline(summary["report"]))
    print(f"report: {summary['report']}/report.md\n        {summary['report']}/report.html")
    print(f"[demo] done in {(time.time() - start) / 60:.1f} min")
    return 0


def headline(report_dir: str) -> str:
    """Table I and Table II of a report, as Markdown for the terminal."""
    tables = Path(report_dir) / "tables"
    parts = []
    for name in ("table1_pretrained_vs_random", "table2_single_vs_ensemble"):
        path = tables / f"{name}.md"
        if path.exists():
            parts.append(path.read_text().strip())
    return "\n\n".join(parts)


def _report(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    state = "reused existing" if summary["reused"] else "wrote"
    print(f"{state} dataset version {summary['version']}: {summary['clips']} rows "
          f"({summary['augmented']} augmented), {summary['rejected']} rejected, {summary['seconds']} s")
    print(f"  -> {summary['uri']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rethink-audio", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_preprocess(sub)
    _add_train(sub)
    _add_plan(sub)
    _add_sweep(sub)
    _add_run(sub)
    demo = sub.add_parser("demo", help="run the main job on the bundled FSDD subset")
    demo.add_argument("--out", dest="storage", default=str(REPO_ROOT / "runs"),
                      help="storage root; results go to OUT/demo (default: runs/ in the repository)")
    demo.add_argument("--cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    demo.add_argument("--no-figures", action="store_true", help="skip SVCCA and Integrated Gradients")
    demo.add_argument("--smoke", action="store_true",
                      help="one seed, one fold, one epoch on tiny images (checks the whole path in ~2 min)")
    demo.add_argument("--force-unlock", action="store_true",
                      help="break another driver's lease on the results root (only when that driver is gone)")
    demo.add_argument("--verbose", action="store_true",
                      help="stream Ray's worker logs and Tune's status tables (default: one line per epoch)")
    _add_split_override(demo)
    # what _start reads for `sweep` and `run`: the demo joins no cluster and asks nothing within the limit
    demo.set_defaults(plan=str(REPO_ROOT / "plans" / "demo.yaml"), address=None, gpu=None, cluster=None, yes=False,
                      max_gpu_hours=DEFAULT_MAX_GPU_HOURS)
    register_analysis(sub)
    return parser


COMMANDS = {"preprocess": cmd_preprocess, "train": cmd_train, "plan": cmd_plan, "sweep": cmd_sweep,
            "run": cmd_run, "demo": cmd_demo}


def rerun_command(argv: list[str]) -> str:
    """The command line that resumes this one: ``sweep`` and ``run`` with ``--resume``; ``demo`` and ``train``
    as they were (they resume by themselves: finished trials are kept, unfinished ones go on from their
    checkpoints)."""
    import shlex

    resume = ["--resume"] if argv[:1] in (["sweep"], ["run"]) and "--resume" not in argv else []
    return shlex.join(["rethink-audio", *argv, *resume])


def interrupted_line(stop, argv: list[str]) -> str:
    """One line for an interrupted sweep: what finished, what stopped, and the command that resumes it."""
    import signal

    name = signal.Signals(stop.signum).name if stop.signum else "signal"
    result = stop.result
    if stop.detail:
        done = stop.detail
    elif result is None:
        done = "stopped before any trial of phase 2 started (finished searches and datasets are kept)"
    else:
        interrupted = sum(reason == "interrupted" for reason in result.stopped.values())
        left = result.trials - result.finished - interrupted - len(result.failed)
        done = (f"{result.finished}/{result.trials} trials finished, {interrupted} interrupted (checkpoint "
                f"written), {len(result.failed)} failed, {left} not started")
    return f"interrupted ({name}): {done}; resume with: {rerun_command(argv)}"


def main(argv: list[str] | None = None) -> int:
    from orchestrator.interrupts import SweepInterrupted, SweepStorageError
    from orchestrator.storage import StorageFullError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        handler = COMMANDS.get(args.command) or args.handler  # tables / query come from analysis.cli
        return handler(args)
    except SweepInterrupted as stop:
        print(interrupted_line(stop, argv), file=sys.stderr, flush=True)
        return 128 + (stop.signum or 2)
    except KeyboardInterrupt as stop:  # a second signal (StopNow), or a Ctrl-C outside a sweep's own handling
        print(f"interrupted at once: trials keep their last checkpoint; resume with: {rerun_command(argv)}",
              file=sys.stderr, flush=True)
        return 128 + getattr(stop, "signum", 2)
    except (SweepStorageError, StorageFullError) as exc:  # a failed write ended the run: a failure, not usage
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except RethinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Ray wraps worker errors; show ours plainly when that is what it is
        message = user_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
