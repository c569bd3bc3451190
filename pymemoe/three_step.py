r"""After the classes: distal outcomes and predictors of membership by bias-adjusted three-step
methods.

Once the number of experts is chosen, applied papers relate the classes to predictors ("who is
in the rapidly progressing class?") and to distal outcomes ("do the classes differ in
survival at ten years?"). Assigning each subject to its modal class and analysing the classes
as if observed biases the associations towards zero and makes their standard errors too small,
because the assignment is wrong for some subjects. The three-step methods correct for the
classification error (Vermunt 2010; Bakk, Tekle & Vermunt 2013):

* :func:`distal_outcome`: the law of a per-subject outcome within each expert (Gaussian mean and
  SD, a probability, a Poisson mean, or category probabilities), with Wald tests of equality
  across experts;
* :func:`class_predictors`: a multinomial logit of membership on baseline predictors;
* :func:`classification_error`: the matrix D_kl = P(assigned l | class k) both correct for.

``method="modal"`` is the naive analysis (kept for comparison), ``"bch"`` the
Bolck-Croon-Hagenaars weighting and ``"ml"`` the maximum-likelihood three-step. Standard errors
``se="corrected"`` add the uncertainty of the MEMoE's estimates (Bakk, Oberski & Vermunt 2014);
``se="step3"`` treat them as known (as Mplus' ``R3STEP`` and ``DU3STEP`` do). The mathematics is
in :mod:`pymemoe._relate`.

Which method when: BCH does not change the classes (their sizes and meaning stay those of the
fit) and is robust to a misspecified distal law; ML is more efficient and keeps estimates in
range (a BCH probability can leave [0, 1] when the classification is poor). Both need the
classification to carry information: with an entropy below about 0.6 the bias corrections are
large and their standard errors too (Vermunt 2010). Predictors related in step 3 should not be
in the model's gating formula (step 1 would already use them).

References
----------
Vermunt (2010), Latent class modeling with covariates: two improved three-step approaches.
Political Analysis 18(4). Bakk, Tekle & Vermunt (2013), Sociological Methodology 43.
Bakk, Oberski & Vermunt (2014), Political Analysis 22(4). Bakk & Kuha (2018), Psychometrika
83(4).
"""
from __future__ import annotations

import warnings
from typing import Hashable

import numpy as np
import pandas as pd
from scipy import stats

from ._design.subject_level import subject_design, subject_values
from ._estimation.passes import e_pass
from ._execution.blocks import as_blocks
from ._model.params import from_user
from ._relate.classification import classification_error as error_matrix
from ._relate.classification import modal_assignment
from ._relate.distal import CategoricalLaw, distal_law
from ._relate.estimators import (METHODS, SubjectWeights, ml_distal, ml_predictors,
                                 step1_correction, weighted_distal, weighted_predictors)
from ._tables import Table, format_frame

__all__ = ["distal_outcome", "class_predictors", "classification_error", "ThreeStepResults"]

SE_TYPES = ("corrected", "step3")


def classification_error(results) -> pd.DataFrame:
    """The classification error of modal assignment: P(assigned to l | in expert k), experts
    in rows, assignments in columns (rows sum to 1; the identity for perfect classification).

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(random_state=0)
    >>> classification_error(res).round(3).to_numpy().tolist()    # rows: experts 1, 2
    [[0.917, 0.083], [0.047, 0.953]]
    """
    tau = results.posterior.to_numpy()
    weights = results.weights
    D = error_matrix(tau, modal_assignment(tau), None if weights is None else weights.to_numpy())
    experts = pd.Index(range(1, tau.shape[1] + 1), name="expert")
    return pd.DataFrame(D, index=experts, columns=pd.Index(experts, name="assigned"))


def _check_common(results, method: str, se: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if se not in SE_TYPES:
        raise ValueError(f"se must be one of {SE_TYPES}, got {se!r}")
    if results.n_experts < 2:
        raise ValueError("the model has one expert: there are no classes to relate")
    if se == "corrected" and method != "modal" and results.cov_type == "none":
        raise ValueError("se='corrected' needs the covariance of the model's estimates; the "
                         "model was fitted with cov_type='none' (refit with 'oim' or "
                         "'robust', or pass se='step3')")


def _tau_function(results):
    """The posterior (N, K) of the fitting subjects at a user parameter vector."""
    model = results.model
    blocks = as_blocks(model.data, model.structure.n_experts)

    def tau_at(vector: np.ndarray) -> np.ndarray:
        params = from_user(vector, model.structure)
        caches, _, _, _ = e_pass(blocks, params, blocks.empty_caches())
        return np.asarray(blocks.joined(caches).tau)
    return tau_at


def _with_step1(fit, results, method: str, se: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The covariance to report and the Jacobian J of the correction (None without)."""
    if se == "step3" or method == "modal":
        return fit.cov, None
    cov1 = results.cov_params().to_numpy()
    theta1 = results.params.to_numpy()
    with np.errstate(invalid="ignore"):
        free = np.isfinite(np.diag(cov1)) & (np.diag(cov1) > 0)
    cov, jac = step1_correction(fit, _tau_function(results), theta1,
                                np.where(np.isfinite(cov1), cov1, 0.0), free)
    return cov, jac


def distal_outcome(results, data: pd.DataFrame, outcome: Hashable, family: str = "gaussian",
                   method: str = "bch", se: str = "corrected", groups=None) -> "ThreeStepResults":
    """The law of a per-subject outcome within each expert, by a three-step method.

    Parameters
    ----------
    results : MEMoEResults
        The fitted model (step 1).
    data : pandas.DataFrame
        Holds ``outcome`` and the subject column: the long data of the fit (the outcome
        repeated on each row of a subject) or one row per subject. Never modified.
    outcome : str
        The column of the outcome: one value per subject (a ValueError names a subject whose
        rows disagree). Subjects with a missing value, or absent from ``data``, are left out of
        step 3 and counted (``n_missing``); the classification error uses every subject of
        the fit.
    family : {"gaussian", "binomial", "poisson", "categorical"}
        The outcome's law within each expert: a mean and an SD per expert; a probability
        (0/1 or boolean outcome); a Poisson mean (counts); or the probabilities of each
        category (any values, categories in sorted order).
    method : {"bch", "ml", "modal"}
        Bolck-Croon-Hagenaars weighting, the maximum-likelihood three-step (with class
        proportions estimated beside the laws), or modal assignment (biased; for comparison).
    se : {"corrected", "step3"}
        Standard errors with the uncertainty of the model's estimates added (Bakk, Oberski &
        Vermunt 2014; from ``results.cov_params()``) or treating them as known.
    groups : str or array-like, optional
        The subject column of ``data`` (default: the one the model was fitted with).

    Returns
    -------
    ThreeStepResults

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25,
    ...                           died=lambda d: (d["status"] == 2).astype(int))
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(random_state=0)
    >>> died = distal_outcome(res, df, "died", family="binomial", method="bch")
    >>> died.params.round(3).tolist()        # P(died) in experts 1 and 2
    [0.688, 0.152]
    >>> float(died.equality_test().loc["all experts", "P>chi2"]) < 0.001
    True
    """
    _check_common(results, method, se)
    subjects = results.posterior.index
    values = subject_values(data, outcome, groups, _fitted_groups(results), subjects)
    observed = values.notna().to_numpy()
    if not observed.any():
        raise ValueError(f"outcome {outcome!r}: no subject of the fit has a value")
    levels = None
    if family == "categorical":
        if isinstance(values.dtype, pd.CategoricalDtype):
            levels = list(values.cat.categories)
            coded = pd.Series(values.cat.codes.to_numpy(dtype=float), index=subjects)
        else:
            levels = sorted(pd.unique(values[observed]))
            if all(float(v).is_integer() for v in levels):
                levels = [int(v) for v in levels]      # 0.0, 1.0, 2.0 read as 0, 1, 2
            coded = pd.Series(pd.Index(levels).get_indexer(values), index=subjects, dtype=float)
        values = coded
    elif isinstance(values.dtype, pd.CategoricalDtype):
        raise ValueError(f"outcome {outcome!r} is not numeric; use family='categorical'")
    law = distal_law(family, levels)
    rows = np.flatnonzero(observed)
    z = law.encode(values.iloc[rows], str(outcome))
    if isinstance(law, CategoricalLaw) and len(np.unique(z)) < 2:
        raise ValueError(f"outcome {outcome!r} takes one value among the subjects")
    tau = results.posterior.to_numpy()
    assigned = modal_assignment(tau)
    sample = _subject_weights(results)
    if method == "ml":
        fit = ml_distal(law, z, tau, assigned, rows, sample)
    else:
        fit = weighted_distal(law, z, method, tau, assigned, rows, sample)
    cov, _ = _with_step1(fit, results, method, se)
    K = tau.shape[1]
    offset = K - 1 if method == "ml" else 0
    theta = fit.theta[offset:].reshape(K, law.m)
    if not law.in_range(theta):
        warnings.warn(f"the {method.upper()} estimates of the outcome's law are out of range "
                      f"for some expert (e.g. a probability outside [0, 1]): the classification "
                      f"error is large for the subjects with an outcome; consider method='ml'",
                      RuntimeWarning, stacklevel=2)
    # reported parameters (per expert: its proportion under ML, then the law's parameters:
    # means, SDs, probabilities), their covariance by the delta method
    report, jac_report = law.report(theta), law.report_jacobian(theta)
    names = (["proportion"] if offset else []) + law.report_names()
    width = len(names)
    values_out = np.empty(K * width)
    big = np.zeros((K * width, fit.theta.size))
    proportions = np.r_[1.0 - fit.theta[:offset].sum(), fit.theta[:offset]] if offset else None
    for k in range(K):
        row = k * width
        if offset:
            values_out[row] = proportions[k]
            if k == 0:
                big[row, :offset] = -1.0          # p_1 = 1 - (p_2 + ... + p_K)
            else:
                big[row, k - 1] = 1.0
            row += 1
        values_out[row:row + report.shape[1]] = report[k]
        big[row:row + report.shape[1], offset + k * law.m: offset + (k + 1) * law.m] = \
            jac_report[k]
    labels = [(k + 1, name) for k in range(K) for name in names]
    index = pd.MultiIndex.from_tuples(labels, names=["expert", "parameter"])
    reported_cov = big @ cov @ big.T
    tested = _equality_contrasts(law, K, offset, fit.theta.size)
    return ThreeStepResults(
        params=pd.Series(values_out, index=index, name="params"),
        cov=pd.DataFrame(reported_cov, index=index, columns=index),
        kind="distal", what=str(outcome), family=law.name, method=method, se=se,
        n_used=int(rows.size), n_missing=int((~observed).sum()),
        error=classification_error(results), tests=_distal_tests(fit.theta, cov, tested, K),
        converged=fit.converged)


def _subject_weights(results) -> SubjectWeights | None:
    """The weights of a weighted step 1, for every sum of steps 2 and 3."""
    weights = results.weights
    if weights is None:
        return None
    return SubjectWeights(weights.to_numpy(), frequency=results.weight_type == "frequency")


def _fitted_groups(results):
    spec = results.model.spec
    return None if spec is None else spec.groups


def _equality_contrasts(law, K: int, offset: int, size: int) -> list[tuple[str, np.ndarray]]:
    """Contrast matrices (name, C) of the natural parameters: all experts equal, and each
    pair of experts equal (on the tested parameters: the means of a Gaussian law)."""
    tested = list(law.tested)
    m = law.m

    def contrast(a: int, b: int) -> np.ndarray:
        C = np.zeros((len(tested), size))
        for row, t in enumerate(tested):
            C[row, offset + b * m + t] = 1.0
            C[row, offset + a * m + t] = -1.0
        return C

    out = [("all experts", np.vstack([contrast(0, k) for k in range(1, K)]))]
    out += [(f"{a + 1} vs {b + 1}", contrast(a, b)) for a in range(K) for b in range(a + 1, K)]
    return out


def _wald(theta: np.ndarray, cov: np.ndarray, C: np.ndarray) -> tuple[float, int, float]:
    diff = C @ theta
    V = C @ cov @ C.T
    stat = float(diff @ np.linalg.pinv(V) @ diff)
    df = int(np.linalg.matrix_rank(V))
    return stat, df, float(stats.chi2.sf(stat, df)) if df else np.nan


def _distal_tests(theta: np.ndarray, cov: np.ndarray, contrasts, K: int) -> pd.DataFrame:
    rows = {name: _wald(theta, cov, C) for name, C in contrasts}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["chi2", "df", "P>chi2"]) \
        .rename_axis("hypothesis")


def class_predictors(results, data: pd.DataFrame, formula: str, method: str = "ml",
                     se: str = "corrected", groups=None) -> "ThreeStepResults":
    """A multinomial logit of membership on per-subject predictors, by a three-step method.

    Parameters
    ----------
    results : MEMoEResults
        The fitted model (step 1), best fitted without these predictors in its gating.
    data : pandas.DataFrame
        Holds the predictors and the subject column (long or one row per subject; the
        predictors must be constant within subject). Never modified.
    formula : str
        One-sided patsy formula of the predictors, e.g. ``"~ age + C(sex)"``. Subjects with a
        missing predictor are left out of step 3 and counted.
    method : {"ml", "bch", "modal"}
        The maximum-likelihood three-step (Mplus' ``R3STEP``), BCH weighting, or modal
        assignment (biased; for comparison).
    se : {"corrected", "step3"}
        As in :func:`distal_outcome`.
    groups : str or array-like, optional
        The subject column of ``data`` (default: the one the model was fitted with).

    Returns
    -------
    ThreeStepResults
        Coefficients labelled (expert, term): log odds of expert k against expert 1.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq().assign(year=lambda d: d["day"] / 365.25)
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          n_experts=2).fit(random_state=0)
    >>> who = class_predictors(res, df, "~ age + C(sex)")
    >>> list(who.params.index)
    [(2, 'Intercept'), (2, 'C(sex)[T.m]'), (2, 'age')]
    """
    _check_common(results, method, se)
    subjects = results.posterior.index
    exog, names = subject_design(formula, data, groups, _fitted_groups(results), subjects,
                                 eval_depth=1)
    observed = np.isfinite(exog).all(axis=1)
    if not observed.any():
        raise ValueError(f"formula {formula!r}: no subject of the fit has every predictor")
    rows = np.flatnonzero(observed)
    X = exog[rows]
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError(f"formula {formula!r}: the predictors are collinear among the "
                         f"subjects with every predictor")
    tau = results.posterior.to_numpy()
    assigned = modal_assignment(tau)
    K = tau.shape[1]
    sample = _subject_weights(results)
    if method == "ml":
        start = weighted_predictors(X, "modal", tau, assigned, rows, subject_weights=sample).theta
        gamma0 = np.vstack([np.zeros((1, X.shape[1])), start.reshape(K - 1, -1)])
        fit = ml_predictors(X, tau, assigned, rows, start=gamma0, subject_weights=sample)
    else:
        fit = weighted_predictors(X, method, tau, assigned, rows, subject_weights=sample)
    cov, _ = _with_step1(fit, results, method, se)
    if not fit.converged:
        warnings.warn(f"the {method.upper()} multinomial logit did not converge (separation: "
                      f"a predictor may predict an expert perfectly); its estimates and "
                      f"standard errors are unreliable", RuntimeWarning, stacklevel=2)
    labels = [(k, name) for k in range(2, K + 1) for name in names]
    index = pd.MultiIndex.from_tuples(labels, names=["expert", "term"])
    tests = {}
    r = len(names)
    for j, name in enumerate(names):
        if name == "Intercept":
            continue
        C = np.zeros((K - 1, fit.theta.size))
        C[np.arange(K - 1), np.arange(K - 1) * r + j] = 1.0
        tests[name] = _wald(fit.theta, cov, C)
    slopes = [j for j, name in enumerate(names) if name != "Intercept"]
    if len(slopes) > 1:
        C = np.zeros(((K - 1) * len(slopes), fit.theta.size))
        for row, (k, j) in enumerate((k, j) for k in range(K - 1) for j in slopes):
            C[row, k * r + j] = 1.0
        tests["all predictors"] = _wald(fit.theta, cov, C)
    table = pd.DataFrame.from_dict(tests, orient="index", columns=["chi2", "df", "P>chi2"]) \
        .rename_axis("hypothesis")
    return ThreeStepResults(
        params=pd.Series(fit.theta, index=index, name="params"),
        cov=pd.DataFrame(cov, index=index, columns=index),
        kind="predictors", what=formula, family="multinomial logit", method=method, se=se,
        n_used=int(rows.size), n_missing=int((~observed).sum()),
        error=classification_error(results), tests=table, converged=fit.converged)


class ThreeStepResults:
    """The step-3 estimates of :func:`distal_outcome` or :func:`class_predictors`: immutable,
    labelled, with statsmodels' names (``params``, ``bse``, ``conf_int()``, ``cov_params()``,
    ``summary()``) and the tests across experts (:meth:`equality_test`)."""

    def __init__(self, params: pd.Series, cov: pd.DataFrame, kind: str, what: str, family: str,
                 method: str, se: str, n_used: int, n_missing: int, error: pd.DataFrame,
                 tests: pd.DataFrame, converged: bool) -> None:
        self._params, self._cov = params.copy(), cov.copy()
        self.kind, self.what, self.family = kind, what, family
        self.method, self.se_type = method, se
        self.n_used, self.n_missing, self.converged = n_used, n_missing, converged
        self._error, self._tests = error.copy(), tests.copy()

    @property
    def params(self) -> pd.Series:
        """Estimates: per expert, the outcome's law (``distal``; with the class proportions
        for ``method="ml"``) or the log odds of membership against expert 1 (``predictors``)."""
        return self._params.copy()

    def cov_params(self) -> pd.DataFrame:
        return self._cov.copy()

    @property
    def bse(self) -> pd.Series:
        with np.errstate(invalid="ignore"):
            return pd.Series(np.sqrt(np.diag(self._cov.to_numpy())), index=self._params.index,
                             name="bse")

    @property
    def zvalues(self) -> pd.Series:
        """params / bse (tests of 0: meaningful for the coefficients of predictors)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.params / self.bse).rename("zvalues")

    @property
    def pvalues(self) -> pd.Series:
        return pd.Series(2.0 * stats.norm.sf(np.abs(self.zvalues)), index=self._params.index,
                         name="pvalues")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals params +- z_{1 - alpha/2} bse."""
        crit = stats.norm.ppf(1 - alpha / 2)
        return pd.DataFrame({"lower": self.params - crit * self.bse,
                             "upper": self.params + crit * self.bse})

    @property
    def classification_error(self) -> pd.DataFrame:
        """P(assigned l | expert k) of the model's modal assignment."""
        return self._error.copy()

    def equality_test(self) -> pd.DataFrame:
        """Wald tests: for a distal outcome, equal means (probabilities, category
        probabilities) in all experts and in each pair; for predictors, each predictor's
        coefficients all 0 (it does not predict membership) and all predictors at once."""
        return self._tests.copy()

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Estimates, standard errors, z, p-values and intervals as one frame."""
        ci = self.conf_int(alpha)
        return pd.DataFrame({"coef": self.params, "std err": self.bse, "z": self.zvalues,
                             "P>|z|": self.pvalues, "lower": ci["lower"],
                             "upper": ci["upper"]})

    def summary(self, alpha: float = 0.05, float_format: str = "%.4f") -> Table:
        """The estimates as a table for papers (text, LaTeX, Markdown, HTML, CSV), with the
        tests across experts in its notes."""
        frame = self.to_frame(alpha)
        if self.kind == "distal":
            frame = frame.drop(columns=["z", "P>|z|"])
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        frame = frame.rename(columns={"lower": lo, "upper": hi})
        cells = format_frame(frame, float_format)
        methods = {"bch": "BCH", "ml": "ML three-step", "modal": "modal assignment"}
        se = ("standard errors with the model's uncertainty added (Bakk, Oberski & Vermunt "
              "2014)" if self.se_type == "corrected" and self.method != "modal"
              else "standard errors treating the model's estimates as known")
        subject = (f"{self.n_used} subjects" + (f" ({self.n_missing} without a value, left out)"
                                                if self.n_missing else ""))
        tests = "; ".join(f"{name}: chi2 = {row['chi2']:.2f}, df = {int(row['df'])}, "
                          f"p {_p_text(row['P>chi2'])}" for name, row in self._tests.iterrows())
        what = (f"Distal outcome {self.what!r} ({self.family}) by expert"
                if self.kind == "distal" else f"Membership on {self.what} (log odds vs expert 1)")
        notes = (f"{methods[self.method]}; {se}; {subject}.\n"
                 f"Wald tests ({'equal across experts' if self.kind == 'distal' else 'no effect'}"
                 f"): {tests}.")
        return Table(frame, cells, title=what, notes=notes)

    def __repr__(self) -> str:
        return (f"<ThreeStepResults: {self.kind} {self.what!r}, {self.method}, "
                f"{self.n_used} subjects>")


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"
