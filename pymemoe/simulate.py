r"""Draw long-format longitudinal data from a MEMoE with known parameters.

The generative model (the model of :mod:`pymemoe.model` with intercept + time designs) for
subjects i = 1..N, visits j = 1..n_i at times t_ij::

    w_i  = (1, x_i1, ..., x_i,r-1)                         baseline (gating) covariates
    c_i  ~ Categorical(pi_i1, ..., pi_iK),   pi_ik = exp(w_i' gamma_k) / sum_l exp(w_i' gamma_l)
    b_i | c_i = k  ~  N_2(0, D_k)                          random intercept and slope
    y_ij = (beta_k0 + b_i0) + (beta_k1 + b_i1) t_ij + e_ij,   k = c_i
    e_ij ~ N(0, sigma2_k)                                  (``errors="normal"``)

Only the residual law can be changed, to misspecify the model on purpose (every variant keeps
mean zero, independence across visits, and the expert's residual variance on average):

``"normal"``
    e_ij = sqrt(sigma2_k) z_ij, z_ij standard normal: the MEMoE itself.
``"t"``
    e_ij = sqrt(sigma2_k (df - 2) / df) T_ij, T_ij Student t with ``df`` > 2 degrees of freedom:
    variance sigma2_k, heavy tails (excess kurtosis 6 / (df - 4) for df > 4, infinite for
    df <= 4). The Gaussian likelihood is then misspecified, the setting of the robust sandwich.
``"heteroscedastic"``
    e_ij = sqrt(sigma2_k g(t_ij)) z_ij with the variance function
    g(t) = 0.25 + 1.5 t / follow_up, which grows linearly from 0.25 at baseline to 1.75 at the
    end of follow-up and averages exactly 1 over [0, follow_up] and over every regular schedule.

**Visit schedule.** The number of planned visits n_i is ``visits`` (an int) or uniform on the
integers of ``visits=(low, high)`` (both ends included). With ``times="regular"`` the planned
times are t_ij = follow_up (j - 1) / (n_i - 1), equally spaced from 0 to ``follow_up`` (0 alone
when n_i = 1); with ``times="irregular"`` the first visit is at 0 and the other n_i - 1 are
sorted independent uniforms on [0, follow_up]. **Dropout** (missing completely at random):
after each visit but the last planned one the subject leaves the study with probability
``dropout``, independently of everything else, and misses all later visits; every subject keeps
its first visit, so the number of visits attended is min(n_i, G_i) with G_i geometric on
{1, 2, ...} with success probability ``dropout``.

**Gating covariates.** By default the r - 1 covariates are independent standard normals named
``x1, x2, ...``; a DataFrame or array of subject-level covariates (one row per subject) can be
given instead. Simulating from a fitted :class:`~pymemoe.results.MEMoEResults` resamples the
fitted subjects' covariate rows with replacement, so that the gating probabilities are realistic.

Everything is drawn at once for all subjects (no loop over subjects) from one
``numpy.random.default_rng(random_state)``: the same seed gives identical data.

:func:`paper_settings` holds the named parameter sets of the simulation study (experts that
differ in fixed effects only; also in variance components; increasing random-effect variance).

Examples
--------
>>> from pymemoe import MEMoE
>>> from pymemoe.simulate import paper_settings, simulate
>>> sim = simulate(paper_settings()["example1"], 100, visits=6, random_state=0)
>>> sim.data.shape
(600, 6)
>>> list(sim.data.columns)
['id', 'time', 'x1', 'x2', 'y', 'expert']
>>> sim.formula_kwargs
{'formula': 'y ~ time', 'groups': 'id', 're_formula': '~ time', 'gate_formula': '~ x1 + x2'}
>>> model = MEMoE.from_formula(data=sim.data, n_experts=2, **sim.formula_kwargs)
>>> model.structure.exog_gate_names
('Intercept', 'x1', 'x2')
"""
from __future__ import annotations

import dataclasses
import keyword
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from ._design.events import SubjectEvents, hazard_design
from ._design.new_data import build_new_design
from ._design.questions import replace_outcome, required_variables
from ._design.subjects import first_rows, subject_codes
from ._model.params import Params, psd_cholesky
from ._predictive.laws import gating_probabilities
from ._predictive.rows import design_rows, require_rows

__all__ = ["SimulatedData", "simulate", "paper_settings", "heteroscedastic_variance"]

TIMES = ("regular", "irregular")
ERRORS = ("normal", "t", "heteroscedastic")
_RESERVED = ("id", "expert")
_HETERO_BASE, _HETERO_SLOPE = 0.25, 1.5


@dataclass(frozen=True, eq=False)
class SimulatedData:
    """Data drawn by :func:`simulate`, with the truth that generated them.

    Attributes
    ----------
    data : pandas.DataFrame
        Long format, one row per visit, rows sorted by subject then time. Columns: ``id``
        (subject, 1..N), the time variable (``time``), the gating covariates (``x1, x2, ...``;
        constant within subject), the outcome (``y``) and ``expert`` (the true expert c_i,
        1-based).
    truth : pymemoe._model.params.Params
        The parameters used (gamma, beta, cov_re, scale).
    expert : pandas.Series
        True expert of each subject (1-based), indexed by ``id``.
    random_effects : pandas.DataFrame
        True random effects b_i, indexed by ``id``, columns the random-effects terms
        (``Intercept`` and the time variable, as in ``MEMoEResults.random_effects``).
    prior : pandas.DataFrame
        Gating probabilities pi_ik of each subject (``id`` x experts 1..K).
    formula_kwargs : dict
        ``formula``, ``groups``, ``re_formula`` and ``gate_formula`` (and ``shared_formula``)
        of the generating model, so that
        ``MEMoE.from_formula(data=sim.data, n_experts=K, **sim.formula_kwargs)`` fits it
        (empty for a parametric bootstrap of a model built from arrays).
    model_kwargs : dict
        ``n_experts`` and, for a parametric bootstrap, the fitted model's ``cov_re``,
        ``re_structure`` and ``scale``: ``MEMoE.from_formula(data=sim.data,
        **sim.formula_kwargs, **sim.model_kwargs)`` refits the same model.
    """

    data: pd.DataFrame
    truth: Params
    expert: pd.Series
    random_effects: pd.DataFrame
    prior: pd.DataFrame
    formula_kwargs: dict
    model_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return len(self.expert)

    @property
    def n_experts(self) -> int:
        return self.truth.n_experts


def heteroscedastic_variance(time, follow_up: float = 5.0) -> np.ndarray:
    """The variance multiplier g(t) = 0.25 + 1.5 t / follow_up of ``errors="heteroscedastic"``.

    It averages 1 over [0, follow_up] (and over any regular schedule on it).

    Examples
    --------
    >>> heteroscedastic_variance([0.0, 2.5, 5.0]).tolist()
    [0.25, 1.0, 1.75]
    """
    return _HETERO_BASE + _HETERO_SLOPE * np.asarray(time, dtype=float) / follow_up


# -- the generating model: parameters and names ------------------------------------------------

@dataclass(frozen=True)
class _Generator:
    params: Params
    time_name: str
    outcome_name: str
    gate_names: tuple[str, ...]          # raw covariate columns added to the data
    gate_formula: str
    gate_pool: np.ndarray | None         # fitted subjects' gating rows to resample (results)
    spec: object | None                  # DesignSpec of a fitted model (gating design)


def _is_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _check_params(params: Params) -> Params:
    gamma, beta, cov_re, scale = params.gamma, params.beta, params.cov_re, params.scale
    if beta.ndim != 2 or beta.shape[1] != 2:
        raise ValueError(f"beta must have shape (K, 2) (Intercept, time), got {beta.shape}")
    K = beta.shape[0]
    if gamma.ndim != 2 or gamma.shape[0] != K or gamma.shape[1] < 1:
        raise ValueError(f"gamma must have shape (K, r) = ({K}, r) with r >= 1 (an intercept "
                         f"plus r - 1 covariates), got {gamma.shape}")
    if np.any(gamma[0] != 0):
        raise ValueError("gamma[0] must be zero: expert 1 is the reference of the gating "
                         "(subtract gamma[0] from every row; the probabilities are unchanged)")
    if cov_re.shape != (K, 2, 2):
        raise ValueError(f"cov_re must have shape (K, 2, 2) (random intercept and time), "
                         f"got {cov_re.shape}")
    if scale.shape != (K,):
        raise ValueError(f"scale must have shape (K,) = ({K},), got {scale.shape}")
    if not all(np.isfinite(a).all() for a in (gamma, beta, cov_re, scale)):
        raise ValueError("the parameters must be finite")
    if np.any(scale <= 0):
        raise ValueError(f"scale (residual variances) must be positive, got {scale.tolist()}")
    if not np.allclose(cov_re, np.swapaxes(cov_re, 1, 2)):
        raise ValueError("cov_re must be symmetric")
    eig = np.linalg.eigvalsh(cov_re)
    if np.any(eig < -1e-10 * np.maximum(eig.max(axis=1, keepdims=True), 1.0)):
        raise ValueError("cov_re must be positive semi-definite (each D_k a covariance matrix)")
    return params


def _from_params(params: Params, n_gate: int) -> _Generator:
    params = _check_params(params)
    names = tuple(f"x{j}" for j in range(1, n_gate))
    return _Generator(params=params, time_name="time", outcome_name="y", gate_names=names,
                      gate_formula=_gate_formula(names), gate_pool=None, spec=None)


def _gate_formula(names) -> str:
    return "~ " + " + ".join(names) if len(names) else "~ 1"


def _from_results(results) -> _Generator:
    model = results.model
    structure, spec, state = model.structure, model.spec, results.state
    if model.family.has_events:       # a joint model: its trajectory part (events drawn apart)
        structure = model.family.trajectory_structure(structure)
        state = model.family.trajectory_params(state)
    if spec is None:
        raise ValueError("simulate() needs a results object fitted with MEMoE.from_formula (the "
                         "formulas name the columns to simulate); for a model fitted from arrays "
                         "with Intercept + time designs, pass results.state instead")
    fe, re, gate = structure.exog_names, structure.exog_re_names, structure.exog_gate_names
    supported = (structure.k_shared == 0 and len(fe) == 2 and fe[0] == "Intercept"
                 and _is_name(fe[1]) and tuple(re) == tuple(fe))
    if not supported:
        raise ValueError(
            f"simulate() supports fitted models whose fixed and random-effects designs are both "
            f"an intercept plus one numeric time column (formula 'y ~ time', re_formula "
            f"'~ time', no shared_formula); this model has fixed effects {list(fe)}, random "
            f"effects {list(re)} and {structure.k_shared} shared fixed effects")
    if not gate or gate[0] != "Intercept":
        raise ValueError(f"simulate() needs a gating design with an intercept first; this model "
                         f"has gating columns {list(gate)}")
    time_name = fe[1]
    outcome = spec.endog_name if _is_name(spec.endog_name) else "y"
    covariates = tuple(gate[1:])
    plain = all(_is_name(c) for c in covariates)
    clash = {time_name, outcome, *_RESERVED} & set(covariates)
    if clash:
        raise ValueError(f"gating covariates {sorted(clash)} clash with the simulated columns")
    return _Generator(
        params=_check_params(state),
        time_name=time_name,
        outcome_name=outcome,
        gate_names=covariates if plain else (),
        gate_formula=spec.gate_formula if not plain else _gate_formula(covariates),
        gate_pool=model.data.exog_gate[:, 1:] if plain else None,
        spec=spec,
    )


def _generator(params_or_results) -> _Generator:
    if isinstance(params_or_results, Params):
        return _from_params(params_or_results, params_or_results.gamma.shape[-1])
    if isinstance(params_or_results, Mapping):
        try:
            params = Params(**{k: params_or_results[k]
                               for k in ("gamma", "beta", "cov_re", "scale")})
        except KeyError as err:
            raise ValueError(f"a parameter mapping needs the keys gamma, beta, cov_re and scale; "
                             f"missing {err}") from None
        return _from_params(params, params.gamma.shape[-1])
    if hasattr(params_or_results, "state") and hasattr(params_or_results, "model"):
        return _from_results(params_or_results)
    raise ValueError(f"params_or_results must be a pymemoe Params, a mapping of gamma, beta, "
                     f"cov_re and scale, or a fitted MEMoEResults; got "
                     f"{type(params_or_results).__name__}")


# -- argument checks ------------------------------------------------------------------------------

def _visit_range(visits) -> tuple[int, int]:
    if np.ndim(visits) == 0:
        low = high = visits
    else:
        if len(visits) != 2:
            raise ValueError(f"visits must be an int or a pair (low, high), got {visits!r}")
        low, high = visits
    if any(int(v) != v for v in (low, high)) or not 1 <= low <= high:
        raise ValueError(f"visits must be integers with 1 <= low <= high, got {visits!r}")
    return int(low), int(high)


def _check_options(n_subjects, times, follow_up, dropout, errors, df) -> None:
    if isinstance(n_subjects, bool) or int(n_subjects) != n_subjects or n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}")
    if times not in TIMES:
        raise ValueError(f"times must be one of {TIMES}, got {times!r}")
    if not (np.isfinite(follow_up) and follow_up > 0):
        raise ValueError(f"follow_up must be a positive number, got {follow_up!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout (the per-visit probability of leaving) must be in [0, 1), "
                         f"got {dropout!r}")
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, got {errors!r}")
    if errors == "t" and not df > 2:
        raise ValueError(f"df must be > 2 so that t errors have a finite variance, got {df!r}")


# -- the draws ------------------------------------------------------------------------------------

def _gate_covariates(gen: _Generator, gate_covariates, n: int, n_gate: int,
                     rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Raw covariate columns (n rows), the gating design W (n, r) and the gate formula."""
    if gate_covariates is None:
        if gen.gate_pool is not None:
            values = gen.gate_pool[rng.integers(gen.gate_pool.shape[0], size=n)]
        elif gen.spec is not None:
            raise ValueError(
                f"the gating formula {gen.gate_formula!r} is not a sum of numeric columns; pass "
                f"gate_covariates=DataFrame with its raw columns, one row per subject")
        else:
            values = rng.standard_normal((n, n_gate - 1))
        raw = pd.DataFrame(values, columns=list(gen.gate_names))
        return raw, np.column_stack([np.ones(n), values]), gen.gate_formula

    if isinstance(gate_covariates, pd.DataFrame):
        raw = gate_covariates.reset_index(drop=True)
    else:
        if gen.spec is not None and gen.gate_pool is None:
            raise ValueError(f"the gating formula {gen.gate_formula!r} is not a sum of numeric "
                             f"columns; pass gate_covariates as a DataFrame of its raw columns")
        arr = np.asarray(gate_covariates, dtype=float)
        arr = arr[:, None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != len(gen.gate_names):
            raise ValueError(f"gate_covariates as an array must have shape (n_subjects, "
                             f"{len(gen.gate_names)}), columns {list(gen.gate_names)}; got "
                             f"{arr.shape}")
        raw = pd.DataFrame(arr, columns=list(gen.gate_names))
    if len(raw) != n:
        raise ValueError(f"gate_covariates must have one row per subject ({n}), got {len(raw)}")
    bad = set(raw.columns) & {gen.time_name, gen.outcome_name, *_RESERVED}
    if bad:
        raise ValueError(f"gate_covariates columns {sorted(bad)} clash with the simulated columns")

    if gen.spec is not None:       # a fitted model: its stored gating design (levels, transforms)
        frame = raw.assign(**{gen.time_name: 0.0})
        try:
            W = build_new_design(gen.spec, frame)["exog_gate"]
        except Exception as err:   # patsy names the missing or invalid column
            raise ValueError(f"gate_covariates cannot be evaluated by the model's gating "
                             f"formula {gen.spec.gate_formula!r}: {err}") from None
        return raw, W, gen.spec.gate_formula

    if raw.shape[1] != n_gate - 1:
        raise ValueError(f"gate_covariates must have {n_gate - 1} columns (gamma has {n_gate} "
                         f"columns: an intercept and {n_gate - 1} covariates), got {raw.shape[1]}")
    names = [str(c) for c in raw.columns]
    if not all(_is_name(c) for c in names):
        raise ValueError(f"gate_covariates column names must be Python identifiers (they go "
                         f"into the gating formula), got {names}")
    try:
        values = raw.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"gate_covariates must be numeric, got dtypes "
                         f"{raw.dtypes.astype(str).tolist()}") from None
    if not np.isfinite(values).all():
        raise ValueError("gate_covariates must be finite (no missing values)")
    raw = raw.set_axis(names, axis=1)
    return raw, np.column_stack([np.ones(n), values]), _gate_formula(names)


def _schedule(n: int, visits: tuple[int, int], times: str, follow_up: float, dropout: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subject position of every row and the visit times (rows by subject, then time)."""
    low, high = visits
    planned = rng.integers(low, high + 1, size=n)
    subject = np.repeat(np.arange(n), planned)
    first = np.repeat(np.cumsum(planned) - planned, planned)
    j = np.arange(subject.size) - first                       # 0-based visit number
    if times == "regular":
        t = follow_up * j / np.maximum(np.repeat(planned, planned) - 1, 1)
    else:
        t = np.where(j == 0, 0.0, rng.uniform(0.0, follow_up, size=subject.size))
        t = t[np.lexsort((t, subject))]                       # rows stay grouped by subject
    if dropout > 0:
        attended = np.minimum(planned, rng.geometric(dropout, size=n))
        keep = j < np.repeat(attended, planned)
        subject, t = subject[keep], t[keep]
    return subject, t


_SCHEDULE_DEFAULTS = {"visits": (6, 10), "times": "regular", "follow_up": 5.0, "dropout": 0.0}


def simulate(
    params_or_results,
    n_subjects: int | None = None,
    *,
    visits=None,
    times: str | None = None,
    follow_up: float | None = None,
    dropout: float | None = None,
    gate_covariates=None,
    errors: str = "normal",
    df: float = 3.0,
    random_state=None,
) -> SimulatedData:
    """Draw long-format data from a MEMoE with known parameters.

    Two uses:

    * **new subjects** (``n_subjects`` given): ``n_subjects`` subjects on a visit schedule, with
      intercept + time designs (module docstring);
    * **parametric bootstrap** (a fitted results object and ``n_subjects=None``): new outcomes
      for the fitted subjects, rows and covariates of *any* fitted model (every formula,
      option and design), drawn from the fitted parameters: c_i ~ pi_i (the gating at the
      fitted gamma), b_i ~ N(0, D_k), y_ij = x_ij' beta_k + z_ij' b_i + e_ij with
      e_ij ~ N(0, sigma2_k) (or scaled t). ``sim.data`` is the analysis sample (the columns the
      formulas use, the subject column, the simulated outcome and the true ``expert``); refit
      with ``MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs)``.
      The outcome is simulated on the scale of the formula's left-hand side: a plain column is
      replaced, a transformed one (``np.log(bili)``) goes into a new column ``y_sim`` and the
      formula of ``formula_kwargs`` uses it.

    Parameters
    ----------
    params_or_results : pymemoe._model.params.Params, mapping or MEMoEResults
        The truth. A ``Params`` (or a mapping with keys ``gamma, beta, cov_re, scale``) with
        ``beta`` (K, 2) on (Intercept, time), ``cov_re`` (K, 2, 2) of the random intercept and
        slope, ``scale`` (K,) and ``gamma`` (K, r) on (Intercept, x1, ..., x_{r-1}) with
        ``gamma[0] = 0``. Or a fitted :class:`~pymemoe.results.MEMoEResults` from
        ``MEMoE.from_formula`` whose fixed and random-effects formulas are both an intercept
        plus one time column (e.g. ``"logbili ~ year"`` with ``re_formula="~ year"``); its
        estimates (``results.state``) are the truth and its column names are kept. Its gating
        covariates are resampled from the fitted subjects when the gating formula is a sum of
        numeric columns; otherwise pass ``gate_covariates``. A joint model's new subjects
        (``survival=``) also get their follow-up: their hazard covariates resampled with the
        gating's from the fitted subjects (or read from ``gate_covariates``), each cause's
        latent time drawn from the expert's hazards, the event the first of them, censored
        at ``follow_up``, and the rows measured after it dropped; ``formula_kwargs`` then
        has the model's ``survival`` (without delayed entry) and ``truth`` is the fitted
        parameters, hazards included.
    n_subjects : int, optional
        Number of new subjects N; None (with results only) for the parametric bootstrap.
    visits : int or (int, int)
        Planned visits per subject: fixed, or uniform on ``low..high`` (inclusive); default
        (6, 10). Not with the bootstrap (the fitted rows are kept), nor are ``times``,
        ``follow_up``, ``dropout`` and ``gate_covariates``.
    times : {"regular", "irregular"}
        Equally spaced times from 0 to ``follow_up``, or sorted uniforms on [0, follow_up]
        after a first visit at 0 (default ``"regular"``).
    follow_up : float
        Length of follow-up (time of the last regular visit), in the units of the time variable
        (default 5).
    dropout : float in [0, 1)
        Probability of leaving the study after each visit (missing completely at random; the
        first visit is always kept; default 0).
    gate_covariates : pandas.DataFrame or array-like, optional
        Subject-level covariates, one row per subject. With a ``Params``: r - 1 numeric columns
        (a DataFrame's column names become the gating formula, an array's are ``x1, x2, ...``).
        With results: the raw columns of the model's gating formula (evaluated with the stored
        design information, so categorical and transformed terms work). Default: independent
        standard normals (``Params``), resampled fitted subjects (results).
    errors : {"normal", "t", "heteroscedastic"}
        Law of the residuals: the model's normal; Student t with ``df`` degrees of freedom
        scaled to variance sigma2_k; normal with variance sigma2_k g(t), see
        :func:`heteroscedastic_variance`.
    df : float
        Degrees of freedom of the t errors (> 2).
    random_state : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Seed of ``numpy.random.default_rng``; the same seed gives identical data.

    Returns
    -------
    SimulatedData
        ``.data`` (id, time, covariates, y, expert), ``.truth``, ``.expert``,
        ``.random_effects``, ``.prior`` and ``.formula_kwargs``.

    Raises
    ------
    ValueError
        For parameters of the wrong shape, new subjects from a fitted model whose designs are
        not intercept + time, a bootstrap of a model that keeps no rows (built from chunks), or
        an invalid option.

    Examples
    --------
    >>> import numpy as np
    >>> from pymemoe._model.params import Params
    >>> truth = Params(gamma=np.zeros((1, 1)), beta=[[1.0, 0.5]],
    ...                cov_re=[[[0.25, 0.0], [0.0, 0.01]]], scale=[0.1])
    >>> sim = simulate(truth, 3, visits=(2, 4), dropout=0.3, random_state=1)
    >>> sim.data[["id", "time"]].round(2)
       id  time
    0   1  0.00
    1   2  0.00
    2   2  1.67
    3   2  3.33
    4   2  5.00
    5   3  0.00
    6   3  5.00
    >>> sim.formula_kwargs["gate_formula"]
    '~ 1'

    A parametric bootstrap of a fitted model with a transformed outcome:

    >>> from pymemoe import MEMoE
    >>> from pymemoe.datasets import load_pbcseq
    >>> df = load_pbcseq(); df["year"] = df["day"] / 365.25
    >>> res = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year",
    ...                          gate_formula="~ age", n_experts=1).fit()
    >>> boot = simulate(res, random_state=0)
    >>> boot.formula_kwargs["formula"], boot.data.shape
    ('y_sim ~ year', (1945, 5))
    """
    schedule = {"visits": visits, "times": times, "follow_up": follow_up, "dropout": dropout}
    is_results = hasattr(params_or_results, "state") and hasattr(params_or_results, "model")
    joint = is_results and params_or_results.model.family.has_events
    if n_subjects is None:
        if not is_results:
            raise ValueError("n_subjects is needed to simulate from parameters; without it, "
                             "simulate(results) draws a parametric bootstrap of a fit")
        given = [name for name, value in schedule.items() if value is not None]
        if gate_covariates is not None:
            given.append("gate_covariates")
        if given:
            raise ValueError(f"a parametric bootstrap (n_subjects=None) keeps the fitted rows "
                             f"and covariates, so {given} cannot be set; give n_subjects to "
                             f"simulate new subjects instead")
        return _bootstrap(params_or_results, errors, df, random_state)
    schedule = {k: _SCHEDULE_DEFAULTS[k] if v is None else v for k, v in schedule.items()}
    visits, times = schedule["visits"], schedule["times"]
    follow_up, dropout = schedule["follow_up"], schedule["dropout"]
    _check_options(n_subjects, times, follow_up, dropout, errors, df)
    visits = _visit_range(visits)
    gen = _generator(params_or_results)
    truth = gen.params
    n, K = int(n_subjects), truth.n_experts
    rng = np.random.default_rng(random_state)
    if joint and gate_covariates is None:
        gate_covariates = _fitted_covariates(params_or_results, gen, n, rng)

    raw, W, gate_formula = _gate_covariates(gen, gate_covariates, n, truth.gamma.shape[1], rng)
    if W.shape[1] != truth.gamma.shape[1]:
        raise ValueError(f"the gating design has {W.shape[1]} columns but gamma has "
                         f"{truth.gamma.shape[1]}")
    prob = gating_probabilities(W, truth.gamma)                    # (N, K)
    u = rng.random(n)
    expert = (u[:, None] >= np.cumsum(prob, axis=1)[:, :-1]).sum(axis=1)   # 0-based

    subject, t = _schedule(n, visits, times, follow_up, dropout, rng)
    chol = psd_cholesky(truth.cov_re)                              # (K, 2, 2)
    b = np.einsum("nij,nj->ni", chol[expert], rng.standard_normal((n, 2)))

    k_row = expert[subject]
    sd = np.sqrt(truth.scale[k_row])
    if errors == "normal":
        e = sd * rng.standard_normal(t.size)
    elif errors == "t":
        e = sd * np.sqrt((df - 2.0) / df) * rng.standard_t(df, size=t.size)
    else:
        e = sd * np.sqrt(heteroscedastic_variance(t, follow_up)) * rng.standard_normal(t.size)
    beta = truth.beta[k_row]
    y = beta[:, 0] + b[subject, 0] + (beta[:, 1] + b[subject, 1]) * t + e

    ids = np.arange(1, n + 1)
    id_index = pd.Index(ids, name="id")
    data = pd.concat([
        pd.DataFrame({"id": ids[subject], gen.time_name: t}),
        raw.iloc[subject].reset_index(drop=True),
        pd.DataFrame({gen.outcome_name: y, "expert": k_row + 1}),
    ], axis=1)
    experts = pd.Index(range(1, K + 1), name="expert")
    formula_kwargs = {"formula": f"{gen.outcome_name} ~ {gen.time_name}", "groups": "id",
                      "re_formula": f"~ {gen.time_name}", "gate_formula": gate_formula}
    if joint:
        data = _new_subjects_events(params_or_results, data, raw, ids, expert, follow_up,
                                    gen.time_name, rng)
        survival = params_or_results.model.structure_options()["survival"]
        formula_kwargs["survival"] = dataclasses.replace(survival, entry=None, visit_time=None)
    return SimulatedData(
        data=data,
        truth=truth if not joint else params_or_results.state,
        expert=pd.Series(expert + 1, index=id_index, name="expert"),
        random_effects=pd.DataFrame(b, index=id_index, columns=["Intercept", gen.time_name]),
        prior=pd.DataFrame(prob, index=id_index, columns=experts),
        formula_kwargs=formula_kwargs,
        model_kwargs={"n_experts": K},
    )


def _fitted_covariates(results, gen: _Generator, n: int, rng: np.random.Generator
                       ) -> pd.DataFrame:
    """New subjects' covariates for a joint model: the gating's and the hazards' raw columns
    of fitted subjects resampled together (with replacement), so their dependence is kept."""
    model = results.model
    if gen.gate_pool is None or getattr(model, "survival_data", None) is None:
        raise ValueError("new subjects of this joint model need gate_covariates=DataFrame with "
                         "the raw columns of the gating and survival formulas, one row per "
                         "subject (the gating formula is not a sum of numeric columns)")
    pick = rng.integers(gen.gate_pool.shape[0], size=n)
    frame = pd.DataFrame(gen.gate_pool[pick], columns=list(gen.gate_names))
    hazards = model.survival_data.iloc[pick].reset_index(drop=True)
    return pd.concat([frame, hazards[[c for c in hazards.columns if c not in frame.columns]]],
                     axis=1)


def _new_subjects_events(results, data: pd.DataFrame, raw: pd.DataFrame, ids: np.ndarray,
                         expert: np.ndarray, follow_up: float, time_name: str,
                         rng: np.random.Generator) -> pd.DataFrame:
    """New subjects' follow-up under a joint model: each cause's latent time from the
    subject's expert's hazards (its hazard covariates read from ``raw`` by the fitted
    formulas), the event the first of them, censored at the end of follow-up; the rows
    measured after the subject's time are dropped (follow-up ends there)."""
    model = results.model
    family = model.family
    survival = model.structure_options()["survival"]
    fitted = family.event_data(model.data)
    subjects = pd.Index(ids, name="id")
    exog, names, _ = hazard_design(survival.formula, survival.common_formula,
                                   raw.assign(id=ids), "id", None, subjects)
    if tuple(names) != fitted.exog_names:
        raise ValueError(f"the new subjects' survival covariates give the columns {names}, "
                         f"not those of the fit {list(fitted.exog_names)}")
    events = SubjectEvents(time=np.ones(len(ids)), cause=np.zeros(len(ids), dtype=int),
                           exog=exog, exog_names=fitted.exog_names,
                           cause_names=fitted.cause_names)
    drawn, cause = family.simulate_events(results.state, NewSubjects(events), expert, rng)
    time = np.minimum(drawn, follow_up)
    event = np.where(drawn <= follow_up, cause, 0)
    codes = data["id"].to_numpy() - 1
    data = data.assign(**{survival.time: time[codes], survival.event: event[codes]})
    return data[data[time_name].to_numpy() <= time[codes]].reset_index(drop=True)


@dataclass(frozen=True)
class NewSubjects:
    """The time-to-event design of simulated new subjects, as a joint family's data offers it
    to ``simulate_events`` (``events``)."""

    events: SubjectEvents


# -- parametric bootstrap of any fitted model --------------------------------------------------------

def _unused_name(name: str, taken) -> str:
    while name in taken:
        name += "_"
    return name


def _bootstrap(results, errors: str, df: float, random_state) -> SimulatedData:
    """New outcomes for the fitted rows of ``results`` from its estimates (simulate's docstring)."""
    if errors not in ("normal", "t"):
        raise ValueError(f"a parametric bootstrap draws errors 'normal' or 't', got {errors!r} "
                         f"(heteroscedastic errors need the time scale of new subjects)")
    if errors == "t" and not df > 2:
        raise ValueError(f"df must be > 2 so that t errors have a finite variance, got {df!r}")
    require_rows(results, "a parametric bootstrap")
    model, truth = results.model, results.state
    rows = design_rows(results, what="a parametric bootstrap")
    codes, subjects = subject_codes(rows.groups)
    n, K = len(subjects), truth.n_experts
    rng = np.random.default_rng(random_state)
    prob = gating_probabilities(rows.exog_gate[first_rows(codes, n)], truth.gamma)
    fixed = getattr(model.data, "class_prior", None)
    if fixed is not None:
        # fixed prior probabilities replace the gating's (the model's own definition)
        if model.spec is None:
            raise ValueError("a parametric bootstrap of a model with fixed prior probabilities "
                             "needs the model built by MEMoE.from_formula(..., class_prior=)")
        prob = np.where(np.isfinite(fixed[:, :1]), fixed, prob)
    entry = model.family.entry_logsurv(model.data, truth)
    if entry is not None:
        # delayed entry: the data hold the subjects event-free at entry, among whom expert k
        # has probability pi_ik S_k(T0_i) / sum_l pi_il S_l(T0_i)
        prob = prob * np.exp(entry - entry.max(axis=1, keepdims=True))
        prob = prob / prob.sum(axis=1, keepdims=True)
    u = rng.random(n)
    expert = (u[:, None] >= np.cumsum(prob, axis=1)[:, :-1]).sum(axis=1)   # 0-based
    known = getattr(model.data, "known_class", None)
    if known is not None:
        # the model conditions on the known experts: those subjects keep theirs
        if model.spec is None:
            raise ValueError("a parametric bootstrap of a model with known experts needs the "
                             "model built by MEMoE.from_formula(..., known_class=column)")
        expert = np.where(known >= 0, known, expert)
    q = rows.exog_re.shape[1]
    chol = psd_cholesky(truth.cov_re) if q else np.zeros((K, 0, 0))
    b = np.einsum("nij,nj->ni", chol[expert], rng.standard_normal((n, q)))
    k_row = expert[codes]
    y = model.family.simulate_outcome(rows, truth, k_row, b[codes], rng, errors, df)
    trials = rows.row_trials
    structure = model.structure
    model_kwargs = model.structure_options()
    spec = model.spec
    if spec is None:               # arrays: the outcome, the subjects and the true expert
        data = pd.DataFrame({"id": rows.groups, "y": y, "expert": k_row + 1})
        if trials is not None and getattr(model, "trials", None) is not None:
            data["trials"] = trials
        formula_kwargs: dict = {}
    else:
        data = spec.sample.copy()
        group_col = spec.groups if spec.groups is not None else _unused_name("id", data.columns)
        data.insert(0, group_col, rows.groups)
        lhs = spec.endog_name
        outcome_names = list(spec.endog_info.column_names)
        if len(outcome_names) == 2:                   # binomial successes + failures
            if not all(_is_name(c) and c in data.columns for c in outcome_names):
                raise ValueError(f"a parametric bootstrap of a two-column outcome needs plain "
                                 f"column names on the left of the formula, got {spec.formula!r}")
            data[outcome_names[0]] = y
            data[outcome_names[1]] = trials - y
            outcome, formula = None, spec.formula
        elif lhs in data.columns and _is_name(lhs):   # a plain outcome column: replace it
            outcome, formula = lhs, spec.formula
        else:
            # the observed outcome's columns would only mislead: drop those no covariate uses
            used = required_variables(spec)
            covariates = {c for key, cols in used.items() if key != "outcome" for c in cols}
            data = data.drop(columns=[c for c in used["outcome"] if c not in covariates])
            outcome = _unused_name("y_sim", data.columns)
            formula = replace_outcome(spec, outcome)
        if outcome is not None:
            data[outcome] = y
        data[_unused_name("expert", data.columns)] = k_row + 1
        formula_kwargs = {"formula": formula, "groups": group_col, "re_formula": spec.re_formula,
                          "gate_formula": spec.gate_formula}
        if np.any(rows.row_offset != 0):
            # the fitted offset (log exposure included) as one column of the simulated data
            name = _unused_name("offset", data.columns)
            data[name] = rows.row_offset
            formula_kwargs["offset"] = name
        if spec.shared_formula is not None:
            formula_kwargs["shared_formula"] = spec.shared_formula
        if known is not None:
            name = spec.known_class or _unused_name("known_class", data.columns)
            data[name] = np.where(known >= 0, known + 1.0, np.nan)[codes]
            formula_kwargs["known_class"] = name
        if fixed is not None:
            names = (list(spec.class_prior) if spec.class_prior is not None
                     else [_unused_name(f"prior_{k + 1}", data.columns) for k in range(K)])
            for k, name in enumerate(names):
                data[name] = fixed[codes, k]
            formula_kwargs["class_prior"] = names
    if model.family.has_events:
        _add_events(data, model, truth, expert, codes, rng)
    index = pd.Index(subjects, name=subjects.name)
    experts = pd.Index(range(1, K + 1), name="expert")
    return SimulatedData(
        data=data, truth=truth,
        expert=pd.Series(expert + 1, index=index, name="expert"),
        random_effects=pd.DataFrame(b, index=index, columns=list(structure.exog_re_names)),
        prior=pd.DataFrame(prob, index=index, columns=experts),
        formula_kwargs=formula_kwargs, model_kwargs=model_kwargs)


def _add_events(data: pd.DataFrame, model, truth: Params, expert: np.ndarray,
                codes: np.ndarray, rng: np.random.Generator) -> None:
    """A joint model's simulated follow-up, written into ``data`` (its rows, in place): each
    subject's time to event drawn from its expert's hazards, censored where the subject was
    censored in the data (at its own censoring time) and, for a subject that had an event, at
    the end of follow-up of the study (the largest follow-up time); the hazards' covariates
    as read. Every trajectory row is kept (given the expert, the trajectory does not depend
    on the time to event, so which rows are kept does not change the model). Under delayed
    entry the times are drawn given the subject event-free at its entry, which is kept."""
    survival = model.structure_options()["survival"]
    if model.spec is None or getattr(model, "survival_data", None) is None:
        raise ValueError("a parametric bootstrap of a joint model needs the model built by "
                         "MEMoE.from_formula(..., survival=...)")
    observed = model.family.event_data(model.data)
    drawn, cause = model.family.simulate_events(truth, model.data, expert, rng)
    end = float(observed.time.max())
    censor = np.where(observed.cause == 0, observed.time, end)
    time = np.minimum(drawn, censor)
    event = np.where(drawn <= censor, cause, 0)
    for column in model.survival_data.columns:
        if column not in data.columns:
            data[column] = model.survival_data[column].to_numpy()[codes]
    data[survival.time] = time[codes]
    data[survival.event] = event[codes]
    if survival.entry is not None:
        data[survival.entry] = observed.entry[codes]


# -- the simulation study's settings ---------------------------------------------------------------

def _cov(sd_intercept: float, sd_slope: float, corr: float) -> np.ndarray:
    c = corr * sd_intercept * sd_slope
    return np.array([[sd_intercept ** 2, c], [c, sd_slope ** 2]])


def paper_settings() -> dict[str, Params]:
    r"""Named parameter sets of the simulation study (K = 2 experts, time in years over ~5).

    Every setting has intercept + time fixed and random effects and gating on
    (Intercept, x1, x2) with x1, x2 independent standard normals (the default of
    :func:`simulate`)::

        gamma_2 = (-0.5, 1.0, -1.0)   P(expert 2) 0.41 on average, 0.06-0.87 for 90% of subjects
        beta_1  = (1.0, 0.1)          expert 1: low level, slow progression
        beta_2  = (2.0, 0.5)          expert 2: higher level, fast progression

    ``"example1"`` -- experts differ in fixed effects only: both have
    SD(intercept) = 0.5, SD(slope) = 0.1, Corr = 0.2 and residual variance 0.09 (SD 0.3).

    ``"example2"`` -- experts differ in fixed effects and in the random-effects covariance and
    the residual variance: expert 1 as in example 1; expert 2 SD(intercept) = 0.8,
    SD(slope) = 0.2, Corr = 0.25, residual variance 0.25 (SD 0.5). Here the shared-variance
    comparators (``cov_re="shared"``, ``scale="shared"``) are misspecified.

    ``"example3_case1"``, ``"example3_case2"``, ``"example3_case3"`` -- increasing
    random-effect variance, equal in both experts (Corr = 0.2, residual variance 0.09):
    (SD(intercept), SD(slope)) = (0.25, 0.05), (0.5, 0.1) and (1.0, 0.2). The experts overlap
    more and more, so classification gets harder and ignoring the random effects
    (``re_formula="0"``, the conventional MoE) costs more.

    A study design that fits these values: N = 300 to 1000 subjects, ``visits=(6, 10)``,
    ``follow_up=5.0`` (the defaults of :func:`simulate`).

    Returns
    -------
    dict of str to Params
        A new dict on each call.

    Examples
    --------
    >>> settings = paper_settings()
    >>> sorted(settings)
    ['example1', 'example2', 'example3_case1', 'example3_case2', 'example3_case3']
    >>> settings["example2"].scale.tolist()
    [0.09, 0.25]
    """
    gamma = np.array([[0.0, 0.0, 0.0], [-0.5, 1.0, -1.0]])
    beta = np.array([[1.0, 0.1], [2.0, 0.5]])
    base = _cov(0.5, 0.1, 0.2)

    def setting(cov1, cov2, scale1, scale2) -> Params:
        return Params(gamma=gamma, beta=beta, cov_re=np.stack([cov1, cov2]),
                      scale=np.array([scale1, scale2]))

    out = {
        "example1": setting(base, base, 0.09, 0.09),
        "example2": setting(base, _cov(0.8, 0.2, 0.25), 0.09, 0.25),
    }
    for case, (sd0, sd1) in enumerate([(0.25, 0.05), (0.5, 0.1), (1.0, 0.2)], start=1):
        cov = _cov(sd0, sd1, 0.2)
        out[f"example3_case{case}"] = setting(cov, cov, 0.09, 0.09)
    return out
