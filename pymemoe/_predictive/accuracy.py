r"""Accuracy of dynamic event predictions: time-dependent AUC and Brier score with censoring.

A prediction at landmark s with horizon h gives each subject event-free at s a probability
p_i of an event of cause c in (s, s + h]. Among the n_s subjects at risk at s (T_i > s, entered
by s), with D_i = [s < T_i <= s + h, d_i = c] the outcome (Blanche, Proust-Lima et al. 2015,
Biometrics 71; their "definition 2" under competing risks):

* **cases**: D_i = 1; **controls**: subjects with no event of cause c by s + h that are
  observed to be so: event-free beyond s + h, or with an event of another cause in the
  window. Subjects censored in the window have unknown D_i and weight 0; the others are
  weighted by the inverse probability of being uncensored (IPCW), from the Kaplan-Meier
  estimate G(t | s) of the censoring distribution among the subjects at risk at s:

      W_i = 1 / G(T_i- | s)   for an event (of any cause) in the window,
      W_i = 1 / G(s + h | s)  for a subject event-free beyond s + h;

* **AUC** = sum over (case i, control j) of W_i W_j ([p_i > p_j] + [p_i = p_j] / 2), divided by
  (sum of the cases' W_i)(sum of the controls' W_j): the probability that a case is given a
  higher risk than a control;
* **Brier score** = (1 / n_s) sum_i W_i (D_i - p_i)^2: the expected squared error of p_i.

With one cause these are the cumulative/dynamic AUC and the IPCW Brier score of
scikit-survival (``cumulative_dynamic_auc``, ``brier_score``) on the times since s, which the
tests check them against. The censoring estimate counts a subject whose event and censoring
tie as at risk of censoring at that time; with continuous times there are no ties.

No loop runs over subjects: the AUC sorts the controls by risk and sums their weights below
each case's risk by binary search.
"""
from __future__ import annotations

import numpy as np

__all__ = ["censoring_survival", "dynamic_accuracy_arrays"]


def censoring_survival(time: np.ndarray, censored: np.ndarray, at: np.ndarray,
                       left: bool = False) -> np.ndarray:
    """The Kaplan-Meier estimate of the censoring survival G(t) = P(C > t) from follow-up
    times and censoring indicators, at the times ``at`` (``left``: its left limits G(t-)).

    Examples
    --------
    >>> censoring_survival(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, True, False, True]),
    ...                    np.array([1.5, 2.0, 3.5, 4.0]))
    array([1.        , 0.66666667, 0.66666667, 0.        ])
    """
    time = np.asarray(time, dtype=float)
    censored = np.asarray(censored, dtype=bool)
    distinct, inverse = np.unique(time, return_inverse=True)
    at_risk = np.cumsum(np.bincount(inverse, minlength=distinct.size)[::-1])[::-1]
    drops = np.bincount(inverse, weights=censored.astype(float), minlength=distinct.size)
    surv = np.cumprod(1.0 - drops / at_risk)
    where = np.searchsorted(distinct, np.asarray(at, dtype=float),
                            side="left" if left else "right") - 1
    return np.where(where >= 0, surv[np.maximum(where, 0)], 1.0).astype(float)


def dynamic_accuracy_arrays(probability: np.ndarray, time: np.ndarray, event: np.ndarray,
                            landmark: float, horizon: float, cause: int = 1,
                            entry: np.ndarray | None = None) -> dict:
    """Time-dependent AUC and Brier score of predicted probabilities of an event of ``cause``
    in (landmark, landmark + horizon] (module docstring).

    Subjects not at risk at the landmark (an event or censoring at or before it, or an entry
    after it) are left out. Returns a dict: ``n_at_risk``, ``n_cases``, ``n_controls``,
    ``n_censored`` (censored in the window), ``auc`` (NaN without cases or controls) and
    ``brier`` (both NaN when a probability of a subject at risk is missing).

    Examples
    --------
    >>> p = np.array([0.9, 0.2, 0.6, 0.1])
    >>> out = dynamic_accuracy_arrays(p, np.array([2.0, 9.0, 3.0, 8.0]), np.array([1, 0, 1, 0]),
    ...                               landmark=1.0, horizon=4.0)
    >>> out["auc"], round(out["brier"], 4)
    (1.0, 0.055)
    """
    s, h = float(landmark), float(horizon)
    p = np.asarray(probability, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    at_risk = time > s
    if entry is not None:
        at_risk &= np.asarray(entry, dtype=float) <= s
    p, time, event = p[at_risk], time[at_risk], event[at_risk]
    end = s + h
    in_window = time <= end
    case = in_window & (event == cause)
    other = in_window & (event > 0) & (event != cause)
    beyond = ~in_window
    censored_in_window = in_window & (event == 0)
    # G(t | s) among the subjects at risk at s: their own Kaplan-Meier estimate
    g_event = censoring_survival(time, event == 0, time, left=True)
    g_end = censoring_survival(time, event == 0, np.array([end]))[0]
    with np.errstate(divide="ignore"):
        weight = np.where(case | other, 1.0 / g_event, 0.0)
        weight = np.where(beyond, 1.0 / g_end if g_end > 0 else 0.0, weight)
    outcome = case.astype(float)
    n = int(at_risk.sum())
    brier = float(np.sum(weight * (outcome - p) ** 2) / n) if n else np.nan
    control = other | beyond
    auc = _weighted_auc(p[case], weight[case], p[control], weight[control])
    if not np.isfinite(p).all():
        auc = brier = np.nan
    return {"n_at_risk": n, "n_cases": int(case.sum()), "n_controls": int(control.sum()),
            "n_censored": int(censored_in_window.sum()), "auc": auc, "brier": brier}


def _weighted_auc(case_risk: np.ndarray, case_weight: np.ndarray, control_risk: np.ndarray,
                  control_weight: np.ndarray) -> float:
    """sum_ij w_i v_j ([r_i > r_j] + [r_i = r_j] / 2) / (sum w)(sum v)."""
    total = case_weight.sum() * control_weight.sum()
    if not (case_risk.size and control_risk.size and total > 0):
        return np.nan
    order = np.argsort(control_risk, kind="stable")
    sorted_risk = control_risk[order]
    cumulative = np.r_[0.0, np.cumsum(control_weight[order])]
    below = cumulative[np.searchsorted(sorted_risk, case_risk, side="left")]
    through = cumulative[np.searchsorted(sorted_risk, case_risk, side="right")]
    return float(case_weight @ (below + 0.5 * (through - below)) / total)
