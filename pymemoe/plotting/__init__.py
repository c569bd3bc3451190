r"""Plots of a fitted MEMoE (matplotlib is optional).

matplotlib is imported inside each function, so ``import pymemoe`` and every fit work without
it; install it with ``pip install pymemoe[plot]``. Every function draws on ``ax`` when one is
given, otherwise on a new figure, and returns the Axes (``ax.figure`` is the Figure). Fitting
never calls these functions.

* :func:`plot_trajectories`: observed trajectories coloured by assigned expert, with each
  expert's mean curve and its confidence band (or the range of its subjects' observations);
* :func:`plot_fit`: observed and predicted mean trajectories per expert over time bins,
  weighted by the posterior (lcmm's ``plot(m, which = "fit")``);
* :func:`plot_residuals`: standardised residuals against the normal law (histogram, QQ plot)
  and against the fitted values;
* :func:`plot_posterior`: the largest posterior probability per subject, by assigned expert;
* :func:`plot_llf_trace`: the log-likelihood across the EM iterations of the best start;
* :func:`plot_prediction_sets`: prediction sets with the observations they cover and miss;
* :func:`plot_comparison`: information criteria against the number of experts K;
* :func:`plot_event_curves`: a joint model's survival and cumulative incidence by expert,
  against the posterior-weighted Aalen-Johansen estimates;
* :func:`plot_dynamic_prediction`: a subject's measurements up to a landmark, its predicted
  trajectory and its probability of each cause of event after it.

Plots of a fit take their data from the fitted model (the outcome, and the time column when
the formulas use it); ``data=`` is needed only for a time column the formulas do not use.

Expert k is drawn in matplotlib's cycle colour ``"C{k-1}"`` in every plot, so the plots of one
fit can be read together.

**Mean trajectory and bands** (:func:`plot_trajectories`). For expert k and a time t on a
grid, with x(t), z(t) the fixed- and random-effects design rows rebuilt from the model's
formulas (other covariates at typical values), z = z_{1-(1-level)/2}::

    mean_k(t)       = x(t)' beta_k
    confidence band = mean_k(t) +- z sqrt(x(t)' V_k x(t))                 (V_k = Cov(beta_k))
    prediction band = mean_k(t) +- z sqrt(z(t)' D_k z(t) + sigma2_k)

The confidence band (the default) is the uncertainty of the estimated mean curve, by the delta
method from ``cov_params()``; the prediction band is the central ``level`` range of one
observation y(t) of a subject drawn at random from expert k (between- and within-subject
variation), where that expert's observations fall. With several experts the prediction bands
overlap and hide each other; the confidence bands do not.

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from pymemoe import MEMoE
>>> from pymemoe.datasets import load_pbcseq
>>> from pymemoe.plotting import plot_posterior, plot_trajectories
>>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
>>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
...                          n_experts=2).fit(n_starts=2, random_state=0)
>>> fig, axes = plt.subplots(1, 2, figsize=(10, 4))
>>> _ = plot_trajectories(res, "year", ax=axes[0])
>>> _ = plot_posterior(res, ax=axes[1])
>>> plt.close(fig)
"""
from ._checks import plot_fit, plot_residuals
from ._classes import plot_comparison, plot_llf_trace, plot_posterior
from ._events import plot_dynamic_prediction, plot_event_curves
from ._sets import plot_prediction_sets
from ._trajectories import plot_trajectories

__all__ = ["plot_trajectories", "plot_posterior", "plot_llf_trace", "plot_prediction_sets",
           "plot_comparison", "plot_fit", "plot_residuals", "plot_event_curves",
           "plot_dynamic_prediction"]
