"""One call from a results root to every table, figure and a readable report (``report.md`` + ``report.html``).

Layout of the output folder (local path or ``s3://``)::

    report.md, report.html          opens with Table I and II; protocols, datasets, figures, what was skipped
    tables/<name>.md|.tex|.csv      every table (CSV: plain numbers), plus ensembles_per_fold.csv, svcca.csv
    figures/<name>.png|.svg         learning curves, Fig. 2a/2b/2c, Fig. 3 (one per dataset)

SVCCA and Integrated Gradients rebuild networks and run them on CPU, so they cover one representative trial
per configuration (lowest seed, then lowest fold) and can be turned off. Anything that cannot be produced
(unfinished trials, tables without rows, figures without data, missing checkpoints or weights) is listed
with its reason in the report's "Skipped" section and in the returned dict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from analysis import collect, figures
from analysis.collect import Scan, features_label, load_epochs, load_predictions, scan_results
from analysis.document import Document
from analysis.ensembles import ensemble_per_fold, ensemble_summary
from analysis.render import Table, dataset_label
from analysis.stats import CI_NOTE, MIN_PAIRS, fmt_paired
from analysis.tables import PROTOCOL_NOTE, build_tables
from orchestrator.study import PROTOCOLS, SELECTED
from orchestrator import storage
from orchestrator.errors import RethinkError

# what can go wrong rebuilding a trial's network (weights offline, checkpoint missing, data moved)
ANALYSIS_ERRORS = (RethinkError, OSError, RuntimeError, ValueError, KeyError)
TABLES_DIR, FIGURES_DIR = "tables", "figures"
Progress = Callable[[str], None]  # receives one "[report] ..." line per stage (build_report's progress)


def _no_progress(line: str) -> None:
    """The default ``progress``: a library call prints nothing."""


def build_report(results_uri: str, out_uri_or_dir: str, *, svcca: bool = True, attribution: bool = True,
                 max_clips: int = 10, svcca_clips: int | None = None, ig_steps: int = 64,
                 progress: Progress | None = None) -> dict[str, Any]:
    """Write every table and figure and report.md/report.html under ``out_uri_or_dir``.

    ``max_clips``: clips (one per class) in each Integrated Gradients figure; ``svcca_clips``: test-fold
    clips SVCCA runs on (None, the default: per network, enough for 10 x more data points than neurons in
    every block, capped by the fold; see :func:`analysis.svcca.clips_needed`). Returns what was written:
    ``report_md``, ``report_html``, ``results_parquet``, ``tables`` (name -> {md, tex, csv}), ``figures``
    (name -> [png, svg]), ``skipped`` (reasons), ``skipped_trials`` (the trial folders not counted,
    :mod:`analysis.records` entries), ``trials`` (finished) and ``unfinished``.

    ``progress`` (e.g. ``print``) gets one line as each stage starts -- scan, ensembles and tables, figures,
    SVCCA per trial, Integrated Gradients per trial, the documents -- since SVCCA and IG rebuild networks
    on CPU and take minutes; None prints nothing.
    """
    say = progress or _no_progress
    out = storage.resolve(out_uri_or_dir)
    say(f"[report] scanning trial records under {results_uri}")
    scan = scan_results(results_uri)
    results = scan.results
    written: dict[str, Any] = {"results_parquet": collect.locate(results_uri)[0].join(collect.RESULTS_FILE).uri,
                               "tables": {}, "figures": {}, "trials": len(results), "unfinished": len(scan.skipped)}
    skipped = [f"trial folder {s['trial_id']}: {s['reason']}" for s in scan.skipped] + list(scan.warnings)
    say(f"[report] ensembles and tables ({len(results)} finished trials)")
    per_fold = ensemble_per_fold(load_predictions(results_uri, results) if len(results) else pd.DataFrame())
    tables = build_tables(results, ensemble_summary(per_fold), per_fold)
    _write_tables(tables, out, written, skipped)
    _write_csv(out.join(TABLES_DIR, "ensembles_per_fold.csv"), per_fold, written, "ensembles_per_fold")
    say("[report] figures: learning curves, fusion, freeze")
    shown = _main_figures(results_uri, results, out, written, skipped)
    similarity = pd.DataFrame()
    if svcca:
        similarity = _svcca(results_uri, results, svcca_clips, skipped, say)
        shown += _record(written, skipped, "fig2a_svcca", figures.figure_svcca(similarity, out.join(FIGURES_DIR)),
                         caption=svcca_caption(similarity))
        _write_csv(out.join(TABLES_DIR, "svcca.csv"), similarity, written, "svcca")
    else:
        skipped.append("SVCCA (Fig. 2a): turned off (--no-svcca)")
    if attribution:
        shown += _attributions(results_uri, results, out, written, skipped, max_clips, ig_steps, say)
    else:
        skipped.append("Integrated Gradients (Fig. 3): turned off (--no-ig)")
    say(f"[report] writing report.md and report.html under {out.uri}")
    doc = _document(scan, tables, shown, similarity, skipped)
    written["report_md"] = _write(out.join("report.md"), doc.to_markdown())
    written["report_html"] = _write(out.join("report.html"), doc.to_html())
    written["skipped"] = skipped  # the trial folders first, in scan.skipped order
    written["skipped_trials"] = scan.skipped
    return written


# ---------------------------------------------------------------- writing


def _write(loc: storage.Location, text: str) -> str:
    return storage.write_text(loc, text)


def _write_csv(loc: storage.Location, frame: pd.DataFrame, written: dict, name: str) -> None:
    if not frame.empty:
        written["tables"][name] = {"csv": _write(loc, frame.to_csv(index=False))}


def _write_tables(tables: list[Table], out: storage.Location, written: dict, skipped: list[str]) -> None:
    """Each table as .md/.tex/.csv (an empty one as .md/.tex with its note, and a line in skipped)."""
    for table in tables:
        files = {"md": _write(out.join(TABLES_DIR, f"{table.name}.md"), table.to_markdown()),
                 "tex": _write(out.join(TABLES_DIR, f"{table.name}.tex"), table.to_latex())}
        if table.empty:
            skipped.append(f"{table.title}: no rows ({table.empty_reason})")
        else:
            files["csv"] = _write(out.join(TABLES_DIR, f"{table.name}.csv"), table.to_csv())
        written["tables"][table.name] = files


def _record(written: dict, skipped: list[str], stem: str, paths: list[str], need: str | None = None,
            caption: str = "") -> list[tuple[str, str]]:
    """Note a figure as written (returns [(relative png path, caption)]) or as skipped with its need."""
    if paths:
        written["figures"][stem] = paths
        return [(f"{FIGURES_DIR}/{stem}.png", caption or stem)]
    skipped.append(f"figure {stem}: not drawn; it needs {need or figures.NEEDS[stem]}")
    return []


CAPTIONS = {
    "learning_curves": "Learning curves: valid (dashed) and test (solid) accuracy per epoch, mean over trials",
    "fig2b_fusion": "Fig. 2b: weight fusion, accuracy vs number of pretrained blocks K",
    "fig2c_freeze": "Fig. 2c: weight freezing, accuracy vs number of frozen blocks K",
    "fig2a_svcca": "Fig. 2a: SVCCA similarity per block, before vs after fine-tuning",
}


def _main_figures(uri: str, results: pd.DataFrame, out: storage.Location, written: dict,
                  skipped: list[str]) -> list[tuple[str, str]]:
    """Learning curves and the fusion / freeze curves (records only, no networks)."""
    folder = out.join(FIGURES_DIR)
    epochs = load_epochs(uri, results) if len(results) else pd.DataFrame()
    shown = _record(written, skipped, "learning_curves", figures.figure_learning_curves(epochs, folder),
                    caption=CAPTIONS["learning_curves"])
    empty = results.empty
    for stem, draw in (("fig2b_fusion", figures.figure_fusion), ("fig2c_freeze", figures.figure_freeze)):
        shown += _record(written, skipped, stem, [] if empty else draw(results, folder), caption=CAPTIONS[stem])
    return shown


# ---------------------------------------------------------------- SVCCA and Integrated Gradients


def representative_trials(results: pd.DataFrame, inits=("pretrained", "random"),
                          keys=("dataset", "model", "method", "init")) -> pd.DataFrame:
    """One trial per ``keys`` (default: dataset, model, method, init): the lowest seed, then the lowest fold."""
    data = results[results["init"].isin(inits)].sort_values(["seed", "fold"])
    return data.groupby(list(keys), sort=True).head(1)


def svcca_caption(similarity: pd.DataFrame) -> str:
    """Fig. 2a's caption with how many data points per neuron its blocks had (min, median, which fell short)."""
    from analysis.svcca import points_note

    note = points_note(similarity)
    return f"{CAPTIONS['fig2a_svcca']}; {note}" if note else CAPTIONS["fig2a_svcca"]


def _svcca(uri: str, results: pd.DataFrame, n_clips: int | None, skipped: list[str],
           say: Progress | None = None) -> pd.DataFrame:
    """SVCCA per block for the representative pretrained and random trials (failures go to skipped)."""
    from analysis.svcca import trial_block_similarity

    say = say or _no_progress
    frames = []
    trials = representative_trials(results)
    for n, (_, row) in enumerate(trials.iterrows(), 1):
        say(f"[report] SVCCA {n}/{len(trials)}: {row['trial_id']}")
        try:
            frame = trial_block_similarity(collect.trial_uri(uri, row["trial_id"]), n_clips=n_clips)
        except ANALYSIS_ERRORS as exc:
            skipped.append(f"SVCCA of {row['trial_id']}: {exc}")
            continue
        frames.append(frame.assign(dataset=row["dataset"], method=row["method"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


ATTRIBUTION_KEYS = ["dataset", "model", "method", "split", "recipe"]  # one candidate configuration for Fig. 3


def attribution_candidates(results: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3's candidates, best first: per pretrained (dataset, model, method, split, recipe), its
    representative trial (lowest seed, then lowest fold) with ``score``, the configuration's mean test
    accuracy (%) at the epoch its split selects (``protocol``: valid_selected for split nested, best_epoch
    for split paper; valid_selected is NaN under paper, so ranking by it would fall to sort order). Split
    nested ranks before paper: a number the test fold did not choose is the fairer ranking where a dataset
    has both."""
    pretrained = results[results["init"] == "pretrained"]
    # the epoch each split selects (orchestrator.study.SELECTED): best_epoch under paper, valid_selected under nested
    protocol = pretrained["split"].map(SELECTED)
    scored = pretrained.assign(protocol=protocol, score=[100 * r[p] for r, p in
                                                          zip(pretrained.to_dict("records"), protocol)])
    scores = scored.groupby(ATTRIBUTION_KEYS, sort=True)["score"].mean().reset_index()
    first = representative_trials(scored.drop(columns="score"), ("pretrained",), ATTRIBUTION_KEYS)
    candidates = first.merge(scores, on=ATTRIBUTION_KEYS).assign(_paper=lambda f: f["split"] != "nested")
    return (candidates.sort_values(["dataset", "_paper", "score"], ascending=[True, True, False], kind="stable")
            .drop(columns="_paper").reset_index(drop=True))


def _attribution_trials(uri: str, results: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, the first of :func:`attribution_candidates` whose representative trial kept its
    checkpoints."""
    candidates = attribution_candidates(results)
    if candidates.empty:
        return candidates
    candidates = candidates[[_has_checkpoint(uri, t) for t in candidates["trial_id"]]]
    return candidates.drop_duplicates("dataset")


def attribution_caption(row, attr, steps: int) -> str:
    """Fig. 3's caption: what was attributed and by which rule its trial was chosen."""
    return (f"Fig. 3: Integrated Gradients, {dataset_label(row['dataset'])}, {row['model']} pretrained, split "
            f"{row['split']}, seed {row['seed']} fold {row['fold']} ({len(attr.clip_ids)} clips, {steps} steps, "
            f"silence baseline; completeness error {attr.completeness_error():.0%} of the logit change, lower "
            f"with more --ig-steps). Trial: of the pretrained configurations with a checkpoint, the one with "
            f"the highest mean {row['protocol']} ({row['score']:.2f} %; the epoch split {row['split']} selects: "
            "valid_selected for nested, best_epoch for paper; nested ranked before paper), its lowest seed, "
            "then fold")


def _has_checkpoint(uri: str, trial_id: str) -> bool:
    from analysis.trialnet import has_checkpoint

    return has_checkpoint(collect.locate(uri)[1].join(trial_id).uri)


def _attributions(uri: str, results: pd.DataFrame, out: storage.Location, written: dict, skipped: list[str],
                  max_clips: int, steps: int, say: Progress | None = None) -> list[tuple[str, str]]:
    """Fig. 3 per dataset; returns [(relative png, caption)] of the figures drawn."""
    from analysis.attribution import trial_attributions

    say = say or _no_progress
    trials = _attribution_trials(uri, results)
    if trials.empty:
        skipped.append("figure fig3_integrated_gradients: not drawn; it needs a finished 'pretrained' trial "
                       "with its checkpoint")
        return []
    shown = []
    for n, (_, row) in enumerate(trials.iterrows(), 1):
        say(f"[report] Integrated Gradients {n}/{len(trials)}: {row['trial_id']} ({steps} steps)")
        stem = f"fig3_integrated_gradients_{_slug(row['dataset'])}"
        try:
            attr = trial_attributions(collect.trial_uri(uri, row["trial_id"]), max_clips=max_clips, steps=steps)
        except ANALYSIS_ERRORS as exc:
            skipped.append(f"Integrated Gradients of {row['trial_id']}: {exc}")
            continue
        shown += _record(written, skipped, stem, figures.figure_attributions(attr, out.join(FIGURES_DIR), stem),
                         need=figures.NEEDS["fig3_integrated_gradients"], caption=attribution_caption(row, attr, steps))
    return shown


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "dataset"


# ---------------------------------------------------------------- the document


def _document(scan: Scan, tables: list[Table], shown: list[tuple[str, str]], similarity: pd.DataFrame,
              skipped: list[str]) -> Document:
    """The report: summary, Tables I and II, protocols, datasets, other tables, figures, what was skipped."""
    doc = Document(f"Results: {scan.root_uri}")
    doc.paragraph(_summary(scan))
    for table in tables[:2]:  # Table I and II first: the paper's two headline claims
        doc.table(table)
    doc.heading("How to read the numbers: three protocols")
    doc.paragraph(PROTOCOL_NOTE + " Predictions (and so ensembles) exist for last_epoch and the selected epoch: "
                  "valid_selected for split nested, best_epoch for split paper.")
    doc.heading("Paired comparisons")
    doc.paragraph("Every difference in the tables (pretrained − random, ensemble − single model, split modes "
                  "and recipes, ablations − pretrained) is the mean of paired differences over matched runs "
                  f"(the same test fold and seed; for ensembles, the same fold) and the number of pairs n; "
                  f"{CI_NOTE}. Why: with fewer than {MIN_PAIRS} pairs no interval covers what it claims (a "
                  "bootstrap of 2 pairs has 3 possible means); the t-interval's coverage is right from 5 pairs "
                  "up, where the percentile bootstrap's is not (84 % for a nominal 95 % at n = 5). Where an "
                  "interval includes 0, or there are too few pairs for one, the data give no evidence of a "
                  "difference:")
    doc.bullets(comparison_lines(tables) or ["every paired comparison's 95 % CI excludes 0"])
    if scan.results["recipe_label"].ne("").any():
        doc.heading("Recipes")
        doc.paragraph("These results hold several training recipes; tables never average across them and "
                      "name each row's in the recipe column (what differs between them). The recipe id is "
                      "the results table's recipe column.")
        doc.bullets(_recipe_lines(scan.results))
    doc.heading("Datasets")
    doc.bullets(_dataset_lines(scan))
    doc.heading("More tables")
    for table in tables[2:]:
        doc.table(table)
    doc.heading("Figures")
    for path, caption in shown:
        doc.image(path, caption)
    if not similarity.empty:
        doc.paragraph("SVCCA per block (data points = clip × spatial position, neurons = channels; dims = "
                      "directions kept for 99 % of variance; ratio = points / neurons: CCA over-fits towards 1 "
                      "below about 10 ×, so clips are chosen for 10 × per block where the test fold allows):")
        doc.frame(_similarity_view(similarity))
    doc.heading("Skipped")
    doc.bullets(skipped or ["nothing: every trial finished and every table and figure had data"])
    return doc


def comparison_lines(tables: list[Table]) -> list[str]:
    """One sentence per paired comparison whose interval includes 0 or that has too few pairs for one
    (fewer than ``MIN_PAIRS``: its differences listed), and one per comparison that left runs out for want of
    a matching (fold, seed) run."""
    lines = []
    for table in tables:
        for comparison in table.comparisons:
            diffs = comparison.diffs.items()
            zero = [f"{p} {fmt_paired(d).removesuffix(' ~0')}" for p, d in diffs if d.includes_zero]
            if zero:
                lines.append(f"{comparison.label}: the 95 % CI includes 0 under {'; '.join(zero)}: "
                             "no evidence of a difference.")
            few = [f"{p} {fmt_paired(d)}" for p, d in diffs if d.too_few]
            if few:
                lines.append(f"{comparison.label}: fewer than {MIN_PAIRS} matched pairs, no interval, no evidence "
                             f"either way: {' · '.join(few)}.")
            # a protocol one side never has (split paper: no valid_selected) pairs nothing: not "dropped"
            dropped = max((d.dropped for _, d in diffs if d.pairs), default=0)
            if dropped:
                lines.append(f"{comparison.label}: {dropped} run(s) without a matching run on the other side "
                             "left out of the pairs.")
    return lines


def _summary(scan: Scan) -> str:
    results = scan.results
    if results.empty:
        return f"No finished trials yet ({len(scan.skipped)} trial folders without summary.json)."
    def values(column: str) -> str:
        return ", ".join(map(str, sorted(results[column].unique().tolist())))

    parts = [f"{results[c].nunique()} {c}s ({values(c)})" for c in ("dataset", "model", "init", "split")]
    parts.append(f"{results['recipe'].nunique()} recipe(s)")
    return (f"**{len(results)} finished trials** in `{scan.trials_uri}`: " + "; ".join(parts)
            + f"; seeds {values('seed')}; folds {values('fold')}. {len(scan.skipped)} trial folder(s) skipped "
            f"(see Skipped). Protocols: {', '.join(PROTOCOLS)}.")


def _recipe_lines(results: pd.DataFrame) -> list[str]:
    """One line per recipe: its id, what sets it apart, its split modes and how many trials used it."""
    lines = []
    for recipe, rows in results.groupby("recipe", sort=True):
        splits = ", ".join(sorted(rows["split"].unique()))
        lines.append(f"`{recipe}`: {rows['recipe_label'].iloc[0] or '(no difference but the split)'}; "
                     f"split {splits}; {len(rows)} trial(s)")
    return lines


def _dataset_lines(scan: Scan) -> list[str]:
    """One line per dataset version used: size, classes, folds and feature parameters from its card."""
    lines = []
    for uri, card in sorted(scan.cards.items()):
        if not card:
            lines.append(f"`{uri}`: dataset card unreadable; names fall back to the folder name")
            continue
        counts, f = card.get("counts", {}), card.get("features", {})
        per_class = list(counts.get("per_class", {}).values()) or [0]
        per_fold = ", ".join(f"{k}: {v}" for k, v in counts.get("per_fold", {}).items())
        lines.append(
            f"**{dataset_label(card.get('name', '?'))}** (version `{card.get('version', '?')}`, `{uri}`): "
            f"{len(card.get('classes', []))} classes, {counts.get('originals', '?')} clips "
            f"(+{counts.get('augmented', 0)} augmented copies, train only); clips per class {min(per_class)}"
            f"–{max(per_class)}; clips per fold {per_fold}. Features: {features_label(card)} "
            f"({f.get('variant')}), "
            f"{f.get('sample_rate')} Hz, windows {f.get('windows_ms')} ms, hops {f.get('hops_ms')} ms, "
            f"n_fft {f.get('n_fft_ms')} ms, {f.get('n_mels')} mel/gammatone bands, log(x + {f.get('log_eps')}), "
            f"resized to "
            f"{f.get('height')} × {f.get('width')}.")
    return lines


def _similarity_view(similarity: pd.DataFrame) -> pd.DataFrame:
    columns = ["dataset", "model", "init", "block", "svcca", "clips", "points", "channels", "ratio", "dims_before",
               "dims_after"]
    view = similarity[columns].copy()
    view["dataset"] = view["dataset"].map(dataset_label)
    view["svcca"] = view["svcca"].map(lambda v: f"{v:.3f}")
    view["ratio"] = view["ratio"].map(lambda v: f"{v:.3g}×")
    view["reliable"] = similarity["enough"].map({True: "yes", False: "no (too few clips)"})
    return view
