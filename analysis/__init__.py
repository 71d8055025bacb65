"""Analysis of sweep results: tables, ensembles, figures (reads trial records only; never imports Ray)."""
