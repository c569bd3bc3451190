r"""The parametric bootstrap likelihood ratio test of K - 1 against K experts.

The hypotheses are H0: the data come from a MEMoE with K - 1 experts, against H1: they come
from one with K experts (the same formulas, family and covariance options). The statistic is
the likelihood ratio of the two maximum-likelihood fits,

    LR = 2 (l_K - l_{K-1}),

with l_K the maximised log-likelihood of the K-expert model. The K - 1 expert model is nested
in the K-expert model (let a gating probability go to zero), so LR >= 0 at the maxima.

**No chi-square reference.** Under H0 the K-expert model's parameters are not identified:
K - 1 experts are reached on the boundary of its parameter space, either when the gating gives
an expert no subjects (gamma_K -> -inf) or when two experts coincide, and then the gating
coefficients that split them are free. The regularity conditions of Wilks' theorem fail, and
LR has no chi-square null distribution with the difference in the number of parameters as
degrees of freedom. Its null law depends on the design and on the parameters, so it is
estimated by a parametric bootstrap (McLachlan, 1987; Mplus's TECH14, Nylund, Asparouhov &
Muthen, 2007; lcmm users know it as the bootstrap LRT).

**The bootstrap.** With theta_{K-1} the fitted K - 1 expert model (``restricted``), for
b = 1..B:

1. draw new outcomes y*_b for the fitted subjects, rows and covariates from theta_{K-1}
   (:func:`pymemoe.simulate.simulate` with ``n_subjects=None``): expert c_i from the fitted
   gating, random effects b_i ~ N(0, D_k), residuals from the expert's law;
2. fit the K - 1 and the K-expert models to y*_b, with the same fit options as the two fits
   being tested (each refit with ``cov_type="none"``: no standard errors are needed);
3. record LR*_b = 2 (l*_K - l*_{K-1}).

Every draw has its own child of ``numpy.random.SeedSequence(random_state).spawn(B)`` (itself
split into the seeds of the simulation and of the two fits), so a draw does not depend on the
others nor on the number of threads. The p-value counts the observed statistic as one draw from
the null (Davison & Hinkley, 1997, eq. 4.11)::

    p = (1 + #{b : LR*_b >= LR}) / (B + 1),

so p >= 1 / (B + 1), and the test that rejects when p <= alpha has level alpha when
alpha (B + 1) is an integer (B = 19, 39, 99, 199 for alpha = 0.05). Draws whose simulation or
fits raise an error are left out, and B is then the number of draws that succeeded.

**When it is valid.** The bootstrap p-value is right when the fitted K - 1 expert model is
a good description of the data under H0 (each expert's mixed model correctly specified: heavy
tails or heteroscedastic residuals make extra experts absorb the misfit, and the test then
rejects for reasons other than an extra subpopulation), and when every fit reaches its global
maximum. A fit that misses its maximum biases the test in a known direction:

* a bootstrap K-expert fit below its maximum makes LR*_b too small: the null distribution is
  pulled down and the p-value is too small, so the test is **anti-conservative** (it finds
  experts that are not there). This is the usual failure: on data with K - 1 experts the
  K-expert likelihood is flat, with many local maxima and boundary solutions, which is why
  Mplus asks for more random starts in the bootstrap draws (``LRTSTARTS``). A draw whose
  K-expert fit ends below its K - 1 expert fit (LR*_b < 0, impossible at the maxima of nested
  models) is a miss that can be seen; such draws are counted, and their LR*_b is set to 0, the
  smallest value it has at the maxima (the draw may still be too small);
* a bootstrap K - 1 expert fit below its maximum makes LR*_b too large: conservative;
* an observed K-expert fit (``full``) below its maximum makes LR too small: conservative (a
  negative LR is reported with a warning and set to 0);
* an observed K - 1 expert fit (``restricted``) below its maximum makes LR too large and
  simulates from the wrong parameters: anti-conservative.

So fit ``restricted`` and ``full`` with enough starts to trust them, and pass
``fit_kwargs={"n_starts": ...}`` to give the K-expert refits more starts if draws with LR*_b < 0
are reported. The p-value is itself a Monte Carlo estimate, with standard error about
sqrt(p (1 - p) / B): 0.022 at p = 0.05 with B = 99.

**Cost.** B x (one fit with K - 1 experts + one fit with K experts) on data of the original
size, plus B simulations (cheap), with the fit options of the tested fits: B = 99 costs about
200 fits. The draws run in ``n_jobs`` threads (:func:`pymemoe._execution.threads.thread_map`), each fit
in its own thread (``n_jobs=1`` inside), so the threads do not nest.

References
----------
McLachlan (1987). On bootstrapping the likelihood ratio test statistic for the number of
components in a normal mixture. *Applied Statistics* 36(3), 318-324.
Nylund, Asparouhov & Muthen (2007). Deciding on the number of classes in latent class analysis
and growth mixture modeling: a Monte Carlo simulation study. *Structural Equation Modeling*
14(4), 535-569.
Asparouhov & Muthen (2012). Using Mplus TECH11 and TECH14 to test the number of latent classes.
*Mplus Web Notes* No. 14.
Davison & Hinkley (1997). *Bootstrap Methods and their Application*. Cambridge University Press.

See :func:`bootstrap_lrt` for an example and :ref:`choosing-k` for measured costs.

"""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import textwrap
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ._estimation.seeds import as_seed_sequence
from ._execution.threads import progress_bar, thread_map
from ._tables import format_pvalue, render_text
from .exceptions import ConvergenceWarning
from .model import PARALLEL_MIN_PAIRS, MEMoE
from .simulate import simulate

__all__ = ["BootstrapLRTResult", "bootstrap_lrt", "stored_fit_options"]

# A K-expert fit whose llf is more than LLF_RTOL (1 + |l_{K-1}|) below the K - 1 expert fit's
# missed its maximum; a smaller shortfall is the rounding of the two optimisers (LR set to 0
# silently).
LLF_RTOL = 1e-6
# Fit options that each refit sets itself rather than copying from the tested fits.
_SET_PER_REFIT = ("random_state", "start_params", "cov_type", "cov_kwds", "n_jobs", "progress")
_QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True, eq=False)
class BootstrapLRTResult:
    """The outcome of :func:`bootstrap_lrt`.

    Attributes
    ----------
    statistic : float
        The observed LR = 2 (llf_full - llf_restricted) (set to 0 if negative).
    pvalue : float
        (1 + #{LR*_b >= LR}) / (B + 1), B the number of successful draws.
    null_distribution : numpy.ndarray
        LR*_b of the successful draws (read-only; negative values set to 0), in draw order.
    n_boot : int
        Draws requested.
    n_experts : (int, int)
        K - 1 and K.
    llf : (float, float)
        Log-likelihoods of the restricted and full fits tested.
    draws : pandas.DataFrame
        One row per draw (index ``draw``, 1..n_boot): ``llf_restricted``, ``llf_full``,
        ``statistic`` (LR*_b before setting negative values to 0; NaN for a failed draw),
        ``converged_restricted``, ``converged_full``, ``warnings_restricted``,
        ``warnings_full`` (number of diagnostic messages of each refit, as
        ``MEMoEResults.messages``) and ``error`` (empty unless the draw failed).
    warning_counts : dict
        Each kind of refit message (numbers replaced by ``#``) and the number of refits that
        issued it.
    elapsed : float
        Wall-clock seconds of the draws.
    n_jobs : int
        Threads used.
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    n_boot: int
    n_experts: tuple[int, int]
    llf: tuple[float, float]
    draws: pd.DataFrame
    warning_counts: dict
    elapsed: float
    n_jobs: int

    def __post_init__(self) -> None:
        self.null_distribution.setflags(write=False)

    @property
    def n_valid(self) -> int:
        """Draws that succeeded (the B of the p-value)."""
        return int(self.null_distribution.size)

    @property
    def n_failed(self) -> int:
        """Draws whose simulation or fits raised an error (left out)."""
        return int((self.draws["error"] != "").sum())

    @property
    def n_negative(self) -> int:
        """Draws whose K-expert fit ended below their K - 1 expert fit (a missed maximum)."""
        llf = self.draws["llf_restricted"].to_numpy()
        return int((self.draws["statistic"].to_numpy() < -_lr_tolerance(llf)).sum())

    @property
    def n_not_converged(self) -> tuple[int, int]:
        """Successful draws whose K - 1 expert fit, and whose K-expert fit, did not converge."""
        ok = self.draws["error"] == ""
        return (int((~self.draws.loc[ok, "converged_restricted"].astype(bool)).sum()),
                int((~self.draws.loc[ok, "converged_full"].astype(bool)).sum()))

    @property
    def failures(self) -> tuple[str, ...]:
        """``"draw b: error"`` for every failed draw."""
        failed = self.draws.loc[self.draws["error"] != "", "error"]
        return tuple(f"draw {b}: {text}" for b, text in failed.items())

    def quantiles(self, q=_QUANTILES) -> pd.Series:
        """Quantiles of the null distribution (bootstrap critical values), indexed by ``q``."""
        q = np.atleast_1d(np.asarray(q, dtype=float))
        values = (np.quantile(self.null_distribution, q) if self.n_valid
                  else np.full(q.shape, np.nan))
        return pd.Series(values, index=pd.Index(q, name="q"), name="LR")

    def summary(self) -> str:
        """The test as a text table, with the quantiles of the null distribution and the
        draws that failed or missed a maximum."""
        k0, k1 = self.n_experts
        rows = [("Likelihood ratio, 2 (llf_K - llf_K-1)", self.statistic),
                ("p-value (bootstrap)", format_pvalue(self.pvalue, "%.3f")),
                ("Draws requested", self.n_boot),
                ("Draws used (B)", self.n_valid)]
        rows += [(f"Null quantile {q:g}", value) for q, value in self.quantiles().items()]
        not_converged = self.n_not_converged
        rows += [("Failed draws (left out)", self.n_failed),
                 ("Draws with LR < 0 (set to 0)", self.n_negative),
                 (f"Refits not converged, K = {k0}", not_converged[0]),
                 (f"Refits not converged, K = {k1}", not_converged[1]),
                 ("Elapsed (s)", self.elapsed)]
        title = f"Bootstrap likelihood ratio test: {k0} against {k1} experts"
        notes = [f"llf: {self.llf[0]:.3f} (K = {k0}), {self.llf[1]:.3f} (K = {k1}). "
                 f"p = (1 + #{{LR*_b >= LR}}) / (B + 1). LR has no chi-square reference "
                 f"(K - 1 experts lie on the boundary of the K-expert model), so no degrees "
                 f"of freedom are used."]
        if self.n_negative:
            notes.append(f"{self.n_negative} draws had a K = {k1} fit below the K = {k0} fit "
                         f"(a missed maximum: the p-value is too small); refit with more starts "
                         f"(fit_kwargs={{'n_starts': ...}}).")
        notes += [f"Failed {text}" for text in self.failures[:5]]
        if self.n_failed > 5:
            notes.append(f"... and {self.n_failed - 5} more failed draws.")
        notes += [f"Refit warning ({count}x): {text}" for text, count in self.warning_counts.items()]
        table = render_text(pd.DataFrame(rows, columns=["", "value"]), float_format="%.3f",
                            title=title, numeric=[False, True])
        return "\n".join([table] + [textwrap.fill(note, width=90, subsequent_indent="  ",
                                                  break_on_hyphens=False)
                                    for note in notes])

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        k0, k1 = self.n_experts
        return (f"<BootstrapLRTResult {k0} vs {k1} experts: LR={self.statistic:.4g}, "
                f"p={self.pvalue:.4g}, B={self.n_valid}/{self.n_boot}, failed={self.n_failed}, "
                f"negative={self.n_negative}>")


def _lr_tolerance(llf) -> np.ndarray | float:
    """How far below 0 an LR = 2 (l_K - l_{K-1}) may fall by rounding (``llf`` = l_{K-1})."""
    return 2.0 * LLF_RTOL * (1.0 + np.abs(llf))


# -- checks -----------------------------------------------------------------------------------

def _check_results(res, name: str) -> None:
    if not all(hasattr(res, attr) for attr in ("model", "llf", "state", "n_experts")):
        raise ValueError(f"{name} must be a fitted MEMoEResults (MEMoE.from_formula(...).fit()), "
                         f"got {type(res).__name__}")
    model = res.model
    if getattr(model, "spec", None) is None:
        raise ValueError(f"{name} was fitted from arrays: bootstrap_lrt rebuilds the models "
                         f"from their formulas on each simulated data set, so fit both with "
                         f"MEMoE.from_formula")
    if getattr(model, "endog", None) is None:
        raise ValueError(f"{name} keeps no rows (a model built from chunks of data): the "
                         f"bootstrap simulates new outcomes for the fitted rows")


def _same_array(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _differences(restricted, full) -> list[str]:
    """What differs between the two fitted models besides the number of experts."""
    m0, m1 = restricted.model, full.model
    out = []
    o0, o1 = ({"formula": m.spec.formula, "groups": m.spec.groups, **m.formula_options(),
               "family": m.family} for m in (m0, m1))
    for key in dict.fromkeys([*o0, *o1]):
        v0, v1 = o0.get(key), o1.get(key)
        if key != "n_experts" and v0 != v1:
            out.append(f"{key} ({v0!r} vs {v1!r})")
    for attr in ("endog", "exog", "exog_re", "exog_gate", "groups", "offset", "trials"):
        if not _same_array(getattr(m0, attr, None), getattr(m1, attr, None)):
            out.append(f"the data ({attr} differs)")
    return out


def _check_nested(restricted, full) -> None:
    _check_results(restricted, "restricted")
    _check_results(full, "full")
    k0, k1 = restricted.n_experts, full.n_experts
    if k1 != k0 + 1:
        hint = (" (pass the fit with fewer experts first: bootstrap_lrt(restricted, full))"
                if k0 == k1 + 1 else "")
        raise ValueError(f"full must have exactly one more expert than restricted; got "
                         f"n_experts {k0} (restricted) and {k1} (full){hint}")
    diffs = _differences(restricted, full)
    if diffs:
        raise ValueError(f"restricted and full must be the same model of the same data except "
                         f"for n_experts; they differ in: {'; '.join(diffs)}")


def stored_fit_options(results) -> dict[str, Any]:
    """The options of :meth:`pymemoe.MEMoE.fit` that ``results`` was fitted with, as keyword
    arguments of ``fit`` (those a refit sets itself, such as ``random_state``, ``n_jobs`` and
    ``cov_type``, left out).

    The options are read from the results' stored fit options (``options``; today the
    :class:`pymemoe._estimation.context.EMOptions` kept by :class:`~pymemoe.results.MEMoEResults`), keeping
    the fields that are also parameters of ``fit``, so an option added to both carries over.
    Empty when the results hold none.

    Examples
    --------
    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", n_experts=1).fit(maxiter=50)
    >>> stored_fit_options(res)["maxiter"]
    50
    """
    options = getattr(results, "fit_options", None)
    if options is None:
        return {}
    if dataclasses.is_dataclass(options):
        values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    elif isinstance(options, Mapping):
        values = dict(options)
    else:
        values = dict(vars(options))
    accepted = set(inspect.signature(MEMoE.fit).parameters) - {"self"} - set(_SET_PER_REFIT)
    return {k: v for k, v in values.items() if k in accepted}


def _check_fit_kwargs(fit_kwargs) -> dict[str, Any]:
    if fit_kwargs is None:
        return {}
    if not isinstance(fit_kwargs, Mapping):
        raise ValueError(f"fit_kwargs must be a dict of MEMoE.fit options, got "
                         f"{type(fit_kwargs).__name__}")
    set_here = sorted(set(fit_kwargs) & set(_SET_PER_REFIT))
    if set_here:
        raise ValueError(f"fit_kwargs cannot hold {set_here}: every refit sets them itself "
                         f"(seeds from random_state, one thread, no standard errors)")
    allowed = set(inspect.signature(MEMoE.fit).parameters) - {"self"} - set(_SET_PER_REFIT)
    unknown = sorted(set(fit_kwargs) - allowed)
    if unknown:
        raise ValueError(f"fit_kwargs has unknown options {unknown}; MEMoE.fit takes "
                         f"{sorted(allowed)}")
    return dict(fit_kwargs)


# -- the draws ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Draw:
    llf: tuple[float, float] = (np.nan, np.nan)
    converged: tuple[bool, bool] = (False, False)
    messages: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    error: str = ""


def _message_kind(text: str) -> str:
    # the same message with other numbers (expert, size, gradient) is the same kind of warning
    return re.sub(r"[-+]?\d[\d.e+-]*", "#", text)


def bootstrap_lrt(restricted, full, n_boot: int = 99, random_state=None,
                  n_jobs: int | None = None, progress: bool = False, *,
                  fit_kwargs: Mapping[str, Any] | None = None) -> BootstrapLRTResult:
    """Parametric bootstrap likelihood ratio test of K - 1 against K experts (Mplus TECH14).

    See the module docstring for the algorithm, the p-value and when the test is valid.

    Parameters
    ----------
    restricted, full : MEMoEResults
        Fits of the same model (``MEMoE.from_formula``, same data, formulas and options) with
        K - 1 and K experts.
    n_boot : int
        Number of bootstrap draws B (99 or more for a decision at 5%; each costs one fit with
        K - 1 and one with K experts).
    random_state : None, int, numpy.random.Generator or numpy.random.SeedSequence
        Seeds every draw (its simulation and its two fits); the same seed gives the same
        result, whatever ``n_jobs``.
    n_jobs : int, optional
        Draws run in this many threads, each refit in one thread. None (default) uses every
        core (``os.cpu_count()``) when there are at least 20,000 subject-expert pairs
        (N x K) and one thread below that, as :meth:`pymemoe.MEMoE.fit` does: the fits of
        small data hold the interpreter lock, and threads do not make them faster. The
        result does not depend on it.
    progress : bool
        Show progress over the draws (tqdm if installed, else plain lines on stderr).
    fit_kwargs : dict, optional
        Options of :meth:`pymemoe.MEMoE.fit` for both refits of every draw, overriding those
        of the tested fits (which are used by default), e.g. ``{"n_starts": 20}`` for more
        starts in the draws (Mplus's ``LRTSTARTS``). ``random_state``, ``start_params``,
        ``cov_type``, ``cov_kwds``, ``n_jobs`` and ``progress`` are set per refit and cannot
        be given.

    Returns
    -------
    BootstrapLRTResult
        ``statistic``, ``pvalue``, ``null_distribution``, the per-draw diagnostics and
        ``summary()``.

    Raises
    ------
    ValueError
        If the fits are not MEMoEResults of ``from_formula`` models, if ``full`` does not have
        exactly one more expert than ``restricted``, if they differ otherwise (data, formulas,
        options), or for an invalid ``n_boot``, ``n_jobs`` or ``fit_kwargs``.
    RuntimeError
        If every draw fails (the first error is shown).

    Warns
    -----
    ConvergenceWarning
        Once, if ``full``'s log-likelihood is below ``restricted``'s (the full fit missed its
        maximum), and once if some draws' K-expert fit ended below their K - 1 expert fit or
        some draws failed. The refits' own warnings are not issued; they are counted in
        ``warning_counts`` and ``draws``.

    Examples
    --------
    Two well-separated experts (no random effects, to keep the example fast); the draws are
    simulated from the one-expert fit. Use n_boot=99 or more in practice.

    >>> import numpy as np
    >>> from pymemoe import MEMoE, simulate
    >>> from pymemoe._model.params import Params
    >>> truth = Params(gamma=np.zeros((2, 1)), beta=[[0.0, 0.1], [2.0, 0.6]],
    ...                cov_re=np.zeros((2, 2, 2)), scale=[0.1, 0.1])
    >>> sim = simulate(truth, 40, visits=4, random_state=0)
    >>> kwargs = dict(sim.formula_kwargs, re_formula="0")
    >>> fits = [MEMoE.from_formula(data=sim.data, n_experts=K, **kwargs)
    ...         .fit(n_starts=2, random_state=0) for K in (1, 2)]
    >>> test = bootstrap_lrt(*fits, n_boot=3, random_state=0)
    >>> test.n_experts, test.null_distribution.shape, test.pvalue
    ((1, 2), (3,), 0.25)
    >>> print(test.summary())  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Bootstrap likelihood ratio test: 1 against 2 experts
    ...
    Likelihood ratio, 2 (llf_K - llf_K-1)  467.868
    p-value (bootstrap) 0.250
    Draws requested 3
    ...
    """
    _check_nested(restricted, full)
    k0, k1 = restricted.n_experts, full.n_experts
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    n_boot = int(n_boot)
    if n_jobs is None:
        # as MEMoE.fit: below PARALLEL_MIN_PAIRS subject-expert pairs the fits are bound by
        # the interpreter lock and threads only add overhead (PBCseq: 1 thread as fast as 2)
        large = full.n_groups * k1 >= PARALLEL_MIN_PAIRS
        jobs = (os.cpu_count() or 1) if large else 1
    else:
        jobs = n_jobs
    if isinstance(jobs, bool) or int(jobs) != jobs or jobs < 1:
        raise ValueError(f"n_jobs must be None or a positive integer, got {n_jobs!r}")
    jobs = int(jobs)
    overrides = _check_fit_kwargs(fit_kwargs)
    options = [{**stored_fit_options(res), **overrides} for res in (restricted, full)]

    llf0, llf1 = float(restricted.llf), float(full.llf)
    statistic = 2.0 * (llf1 - llf0)
    if statistic < -_lr_tolerance(llf0):
        warnings.warn(f"the fit with {k1} experts has a lower log-likelihood ({llf1:.4f}) than "
                      f"the fit with {k0} ({llf0:.4f}): it missed its maximum, so the statistic "
                      f"is set to 0 and the test is meaningless; refit it with more starts "
                      f"(n_starts)", ConvergenceWarning, stacklevel=2)
    statistic = max(statistic, 0.0)
    seeds = as_seed_sequence(random_state).spawn(n_boot)

    def draw(seed: np.random.SeedSequence) -> _Draw:
        sim_seed, *fit_seeds = seed.spawn(3)
        try:
            sim = simulate(restricted, random_state=sim_seed)
            fits = []
            for K, fit_seed, opts in zip((k0, k1), fit_seeds, options):
                model = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs,
                                           **{**sim.model_kwargs, "n_experts": K})
                # the K fit grows from this draw's K - 1 fit, as compare_experts does (the
                # same strategy as fitting K - 1 inside the K fit, at a third less cost)
                grow = fits[0] if fits and opts.get("starts", "auto") == "auto" else None
                fits.append(model.fit(random_state=fit_seed, n_jobs=1, cov_type="none",
                                      progress=False, grow_from=grow, **opts))
        except Exception as err:  # noqa: BLE001 - a failed draw is reported, not fatal
            return _Draw(error=f"{type(err).__name__}: {err}")
        return _Draw(llf=(float(fits[0].llf), float(fits[1].llf)),
                     converged=(bool(fits[0].converged), bool(fits[1].converged)),
                     messages=(tuple(fits[0].messages), tuple(fits[1].messages)))

    start = time.perf_counter()
    # The refits report their diagnostics in their messages, counted below; issued as warnings
    # they would repeat n_boot times. Only this thread enters the filter context; the worker
    # threads share the module's filters.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = list(progress_bar(thread_map(draw, seeds, jobs), n_boot, "bootstrap draws",
                                progress))
    elapsed = time.perf_counter() - start

    errors = [d.error for d in out]
    if all(errors):
        raise RuntimeError(f"every bootstrap draw failed; the first: {errors[0]}")
    llf = np.array([d.llf for d in out], dtype=float)
    raw = 2.0 * (llf[:, 1] - llf[:, 0])
    ok = np.array([not e for e in errors])
    draws = pd.DataFrame({
        "llf_restricted": llf[:, 0], "llf_full": llf[:, 1], "statistic": raw,
        "converged_restricted": [d.converged[0] for d in out],
        "converged_full": [d.converged[1] for d in out],
        "warnings_restricted": [len(d.messages[0]) for d in out],
        "warnings_full": [len(d.messages[1]) for d in out],
        "error": errors,
    }, index=pd.RangeIndex(1, n_boot + 1, name="draw"))
    null = np.maximum(raw[ok], 0.0)
    pvalue = (1.0 + np.count_nonzero(null >= statistic)) / (null.size + 1.0)
    kinds = Counter(kind for d in out for msgs in d.messages
                   for kind in {_message_kind(m) for m in msgs})
    result = BootstrapLRTResult(
        statistic=float(statistic), pvalue=float(pvalue), null_distribution=null,
        n_boot=n_boot, n_experts=(k0, k1), llf=(llf0, llf1), draws=draws,
        warning_counts=dict(kinds.most_common()), elapsed=float(elapsed), n_jobs=jobs)
    if result.n_negative or result.n_failed:
        warnings.warn(f"bootstrap_lrt: {result.n_negative} of {n_boot} draws had a fit with "
                      f"{k1} experts below the fit with {k0} (a missed maximum, set to LR = 0: "
                      f"the p-value may be too small; use more starts, fit_kwargs="
                      f"{{'n_starts': ...}}) and {result.n_failed} failed (left out); see "
                      f"summary()", ConvergenceWarning, stacklevel=2)
    return result
