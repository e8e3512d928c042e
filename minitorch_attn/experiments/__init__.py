"""The papers' ablations, trained here: one experiment per table, run and reported from the command line.

    python -m minitorch_attn.experiments list
    python -m minitorch_attn.experiments run NAME [--seeds 3] [--quick] [--jobs 2]
    python -m minitorch_attn.experiments report NAME

:mod:`.tables` holds one function per paper table (its rows, the paper's numbers), :mod:`.runner` trains and
writes one result file per (variant, seed) under ``data/results/`` (its contract is at its top),
:mod:`.report` turns those files into tables and figures.
"""
from .report import format_report, figure, summarise, welch_t_test
from .runner import FULL, QUICK, Budget, run
from .tables import EXPERIMENTS, get

__all__ = ["EXPERIMENTS", "get", "run", "Budget", "FULL", "QUICK", "format_report", "figure", "summarise",
           "welch_t_test"]
