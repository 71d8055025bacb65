"""Analysis of sweep results: tables, ensembles, figures (reads trial records only; never imports Ray).

Modules, in the order data flows:

* :mod:`analysis.collect`: trial folders -> ``results.parquet`` (one row per finished trial), predictions,
  per-epoch curves (local paths or ``s3://``).
* :mod:`analysis.ensembles`: deep ensembles (softmax averaged over seeds) per configuration and fold.
* :mod:`analysis.tables` (+ :mod:`analysis.references`, :mod:`analysis.render`): Tables I-III and the
  cutoff / fusion / freeze ablations in Markdown, LaTeX and CSV, under all three protocols; every
  difference paired on (fold, seed), with a t-interval and sign-flip p from 5 pairs up (:mod:`analysis.stats`).
* :mod:`analysis.svcca`, :mod:`analysis.attribution` (+ :mod:`analysis.trialnet`): SVCCA per block and
  Integrated Gradients from a trial's initial and final networks.
* :mod:`analysis.figures`: Fig. 2a/2b/2c, Fig. 3 and learning curves (PNG + SVG).
* :mod:`analysis.report` (+ :mod:`analysis.document`): everything above in report.md / report.html.
* :mod:`analysis.query`, :mod:`analysis.cli`: ``rethink-audio query`` and ``rethink-audio tables``.
"""
