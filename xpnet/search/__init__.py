"""Hyper-parameter search on Optuna: any `xpnet train` run, judged on validation accuracy.

``xpnet search`` (also ``scripts/search.py``) is :func:`main`. The pieces:
:mod:`~xpnet.search.space` (what is drawn), :mod:`~xpnet.search.trial` (one trial on
the Trainer), :mod:`~xpnet.search.storage` (journal file, SQLite, PostgreSQL),
:mod:`~xpnet.search.workers` (trial loop, local processes, retries),
:mod:`~xpnet.search.results` (trials.csv, best.json, figures) and
:mod:`~xpnet.search.final` (train+val, test once). Optuna is imported only when a
search runs.
"""

from xpnet.search.cli import main

__all__ = ["main"]
