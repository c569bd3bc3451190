"""Reproducible experiments with pymemoe.

:mod:`pymemoe.experiments.simulation`
    The simulation study of the MEMoE against its comparators (shared-variance mixture, mixture
    of experts without random effects, linear mixed model): run it with
    ``python -m pymemoe.experiments.simulation --reps R --out DIR``.

The submodules are not imported here, so that ``python -m`` runs them cleanly.
"""
