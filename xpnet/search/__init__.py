"""Hyper-parameter search on Optuna: any `xpnet train` run, judged on validation accuracy.

The library half of ``xpnet search`` (whose flags are :mod:`xpnet.cli.search`). The pieces:
:mod:`~xpnet.search.study` (check the settings, open the study, run the workers),
:mod:`~xpnet.search.space` (what is drawn), :mod:`~xpnet.search.trial` (one trial on
the Trainer, built as `xpnet train` builds it), :mod:`~xpnet.search.storage` (journal file,
SQLite, PostgreSQL), :mod:`~xpnet.search.workers` (trial loop, local processes, retries),
:mod:`~xpnet.search.results` (trials.csv, best.json, figures) and
:mod:`~xpnet.search.final` (train+val, test once). Optuna is imported only when a
search runs. This package imports nothing on its own, so its modules import one way.
"""
