"""Build ``notebooks/binary_and_count.ipynb``, the worked examples of binomial and Poisson
experts (the user guide's page "Binary and count outcomes"), from the cells below.

The notebook is stored executed, as ``pbcseq.ipynb`` is: ``docs/conf.py`` takes the text and
the figures of its tagged cells for the documentation. Edit the cells here, not in the .ipynb,
and regenerate and execute it with::

    python notebooks/make_binary_count.py --execute   # a few minutes: the parameters below
    python notebooks/make_binary_count.py             # the cells only, outputs cleared

The data are the GLMM reference sets of the test suite (``tests/reference/results/glmm``: MASS's
``bacteria`` and ``epil`` and two simulated mixtures with known truth), and the lme4 fits they
are compared with are ``tests/reference/results/glmm_refs_used.json``. ``tests/test_notebooks.py`` checks
that the .ipynb is the one this script writes and executes it with small parameters (cell
tagged ``parameters``).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "binary_and_count.ipynb"
sys.path.insert(0, str(HERE))
from notebook_builder import Cells, main as notebook_main  # noqa: E402

_cells = Cells("glmm")
md, code = _cells.md, _cells.code


# ---------------------------------------------------------------------------------------------

md(r"""
# Binary and count outcomes: worked examples

Binomial and Poisson experts (`family="binomial"` / `"poisson"`) make each expert a generalised
linear mixed model (GLMM): for subject $i$ in expert $k$,
$\eta_{ij} = o_{ij} + x_{ij}^\top\beta_k + z_{ij}^\top b_i$, $b_i \sim N(0, D_k)$, with a logit
link (binary or binomial outcomes) or a log link (counts; $o_{ij}$ an offset, e.g. the log
exposure). The random effects are integrated out by the Laplace approximation (`nAGQ=1`) or
by adaptive Gauss-Hermite quadrature (`nAGQ > 1`).

1. MASS's `bacteria` (binary, 50 children): one expert against lme4's `glmer`, predictions,
   the choice of K, and what the Laplace approximation does to it;
2. a simulated two-expert binary mixture with known truth (600 subjects): the mixture with
   gating, its summary, predictions, classification and plots;
3. the Laplace approximation against quadrature on the same data;
4. counts: MASS's `epil` against `glmer`, a simulated Poisson mixture with exposure;
5. the two-column binomial outcome, prediction sets, bad input.

The user guide's page *Binary and count outcomes* explains the outputs; every number it quotes
is printed here.
""")

md(r"""
## Parameters

`N_STARTS` EM starts per mixture fit, `NAGQ` quadrature nodes per random effect for the fits
that use quadrature, `K_MAX` the largest number of experts compared, `AGQ_GRID` the node counts
of the Laplace-against-quadrature table. The test suite runs the notebook with small values.
""")

code("""
N_STARTS = 10        # EM starts per mixture fit
NAGQ = 10            # adaptive Gauss-Hermite nodes per random effect (1 would be Laplace)
K_MAX = 3            # largest number of experts compared on bacteria
AGQ_GRID = (1, 3, 5, 7, 10, 15, 20)  # node counts of the Laplace-against-quadrature table
SEED = 0             # seeds the EM starts
""", tags=("parameters",))

code("""
import json
import textwrap
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import integrate, stats
from scipy.special import gammaln, log_expit

import pymemoe
from pymemoe import MEMoE, compare_experts
from pymemoe.plotting import plot_fit, plot_posterior, plot_trajectories

%matplotlib inline
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 30)
DATA = Path("..") / "tests" / "reference" / "results" / "glmm"
GLMER = json.loads((DATA.parent / "glmm_refs_used.json").read_text())   # lme4 1.1-31 fits
_start = time.perf_counter()
print(f"pymemoe {pymemoe.__version__}, numpy {np.__version__}, pandas {pd.__version__}")


def timed(fit):
    \"\"\"Run fit(); return its result with the wall and CPU seconds.\"\"\"
    wall, cpu = time.perf_counter(), time.process_time()
    out = fit()
    return out, time.perf_counter() - wall, time.process_time() - cpu
""")

# ---------------------------------------------------------------------------------------------

md(r"""
## 1. Binary outcome: MASS's bacteria

Presence (`yn = 1`) of *H. influenzae* in 50 children with otitis media at weeks 0, 2, 4, 6
and 11 (some visits missed), randomised to placebo, an active drug (`drug`), or the drug with
encouragement to comply (`drug+`); `wk2` is 1 after week 2. We make placebo the reference, as
in R.
""")

code("""
bacteria = pd.read_csv(DATA / "bacteria.csv")
bacteria["trt"] = pd.Categorical(bacteria["trt"], ["placebo", "drug", "drug+"])
children = bacteria.groupby("ID", observed=True).agg(visits=("yn", "size"), trt=("trt", "first"))
print(f"{len(bacteria)} visits of {len(children)} children; visits per child: "
      f"{children.visits.value_counts().sort_index().to_dict()}")
print(f"children per arm: {children.trt.value_counts().sort_index().to_dict()}")
print("\\nproportion with H. influenzae, by week and arm:")
print(bacteria.pivot_table(index="trt", columns="week", values="yn", observed=True)
      .round(2).to_string())
""", tags=("glmm-bacteria-data",))

md(r"""
### One expert against glmer

`n_experts=1` is the GLMM itself: `glmer(yn ~ trt + wk2 + (1 | ID), family = binomial)`.
""")

code("""
def bacteria_k1(nAGQ):
    return MEMoE.from_formula("yn ~ trt + wk2", bacteria, "ID", n_experts=1,
                              family="binomial", nAGQ=nAGQ).fit()


rows = []
for nAGQ, ref in ((1, "bacteria_laplace"), (25, "bacteria_agq25")):
    res, wall, cpu = timed(lambda: bacteria_k1(nAGQ))
    ours = np.r_[res.fe_params[1].to_numpy(), res.cov_re[1].to_numpy()[0, 0]]
    theirs = np.r_[list(GLMER[ref]["fixef"].values()), GLMER[ref]["re_cov"]["ID"][0][0]]
    rows.append({"nAGQ": nAGQ, "pymemoe llf": res.llf, "glmer llf": GLMER[ref]["llf"],
                 "difference": res.llf - GLMER[ref]["llf"],
                 "largest |estimate difference|": np.abs(ours - theirs).max(),
                 "pymemoe s": wall, "glmer s": GLMER[ref]["elapsed"]})
    if nAGQ == 25:
        bac1 = res
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.6g}"))
""", tags=("glmm-bacteria-glmer",))

code("""
print(bac1.summary())
""", tags=("glmm-bacteria-summary",))

md(r"""
### Predictions on the response scale

`predict` returns probabilities. `kind="marginal"` is the population-averaged probability,
$E[\mathrm{expit}(x^\top\beta + b)]$ over $b \sim N(0, D)$, which is closer to 1/2 than
$\mathrm{expit}(x^\top\beta)$; `get_prediction` adds delta-method standard errors and a
confidence interval computed on the logit scale and mapped back. `kind="conditional"` uses a
child's own visits.
""")

code("""
grid = pd.DataFrame({"trt": ["placebo", "drug", "drug+"] * 2, "wk2": [0] * 3 + [1] * 3})
frame = bac1.get_prediction(grid).summary_frame()
frame.insert(0, "trt", grid["trt"]); frame.insert(1, "wk2", grid["wk2"])
X = np.column_stack([np.ones(len(grid)), grid["trt"] == "drug", grid["trt"] == "drug+",
                     grid["wk2"]])
assert list(bac1.fe_params.index) == ["Intercept", "trt[T.drug]", "trt[T.drug+]", "wk2"]
frame["expit(x'beta)"] = 1 / (1 + np.exp(-X @ bac1.fe_params[1].to_numpy()))
print(frame.round(3).to_string(index=False))

child = bacteria[bacteria["ID"] == "X18"]            # drug: positive at weeks 0 and 2 only
later = child.assign(yn=np.where(child["week"] > 2, np.nan, child["yn"]))
print("\\nchild X18:", child["yn"].astype(int).tolist(), "at weeks", child["week"].tolist())
print(pd.DataFrame({"week": child["week"],
                    "marginal": bac1.predict(child),
                    "conditional, all visits": bac1.predict(child, kind="conditional"),
                    "conditional, weeks 0-2 only": bac1.predict(later, kind="conditional")})
      .round(3).to_string(index=False))
""", tags=("glmm-bacteria-predict",))

# ---------------------------------------------------------------------------------------------

md(r"""
### How many experts?

Is there a latent group of children whose infection behaves differently, and does treatment
predict membership? The experts are `yn ~ wk2` with a random intercept, the gating `~ trt`. We
compare K = 1 to `K_MAX` with the Laplace approximation and with quadrature.
""")

code("""
COLUMNS = ["llf", "df", "AIC", "BIC", "ICL", "converged"]
comparisons = {}
for nAGQ in (1, NAGQ):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        comparisons[nAGQ] = compare_experts(
            "yn ~ wk2", bacteria, "ID", n_experts=range(1, K_MAX + 1), n_starts=N_STARTS,
            random_state=SEED, gate_formula="~ trt", family="binomial", nAGQ=nAGQ)
    print(f"nAGQ = {nAGQ}:")
    print(comparisons[nAGQ].table[COLUMNS].round(2).to_string())
    kinds = sorted({w.category.__name__ for w in caught})
    print(f"  warnings of the K > 1 fits: {', '.join(kinds) or 'none'}\\n")
two = comparisons[NAGQ].results[2]
print(f"two experts, nAGQ = {NAGQ}: fixed effects (logit scale) and random-intercept variances")
print(pd.concat([two.fe_params.T, pd.Series({k: two.cov_re[k].to_numpy()[0, 0] for k in (1, 2)},
                                            name="Var(Intercept)")], axis=1).round(2).to_string())
""", tags=("glmm-bacteria-compare",))

md(r"""
The Laplace fit with two experts has a far higher log-likelihood than quadrature's. Its
parameters show why: one expert of children positive at nearly every visit, with an enormous
random-intercept variance. There the Laplace approximation of the integral over $b$ is poor;
its log-likelihood at these parameters, computed by quadrature and by brute-force numerical
integration, is far lower.
""")

code("""
laplace2 = comparisons[1].results[2]
print(laplace2.params.round(2).to_string())


def brute_force_llf(res, data, outcome, groups):
    \"\"\"The mixture log-likelihood of a random-intercept binary model by numerical integration
    over each subject's random intercept (scipy.integrate.quad).\"\"\"
    state, prior, X = res.state, res.prior, res.model.exog
    total = 0.0
    for position, (label, rows) in enumerate(data.groupby(groups, observed=True).indices.items()):
        y = data[outcome].to_numpy()[rows]
        like = 0.0
        for k in range(res.n_experts):
            eta = X[rows] @ state.beta[k]
            sd = np.sqrt(state.cov_re[k, 0, 0])
            def f(b):
                e = eta + b
                return np.exp(np.sum(y * log_expit(e) + (1 - y) * log_expit(-e)))
            if sd < 1e-8:
                value = f(0.0)
            else:
                value = integrate.quad(lambda b: f(b) * stats.norm.pdf(b, 0, sd), -12 * sd,
                                       12 * sd, points=sorted({0.0, *(-eta)}), limit=500)[0]
            like += prior.loc[label].iloc[k] * value
        total += np.log(like)
    return total


print(f"\\nlog-likelihood at these parameters:")
print(f"  Laplace (the fit's)           {laplace2.llf:9.3f}")
for n in (NAGQ, 50):
    model = MEMoE.from_formula("yn ~ wk2", bacteria, "ID", gate_formula="~ trt", n_experts=2,
                               family="binomial", nAGQ=n)
    print(f"  quadrature, nAGQ = {n:<3d}       {model.loglike(laplace2.params):9.3f}")
print(f"  numerical integration (quad)  {brute_force_llf(laplace2, bacteria, 'yn', 'ID'):9.3f}")
print(f"one expert (quadrature):        {comparisons[NAGQ].results[1].llf:9.3f}")
""", tags=("glmm-bacteria-laplace",))

# ---------------------------------------------------------------------------------------------

md(r"""
## 2. A binary mixture with gating (simulated, known truth)

600 subjects with 6-10 visits at times in [0, 5], two experts with opposite trends, a random
intercept and slope per subject, gating on `x1` (normal) and `x2` (binary); made by the R
reference script (`sim_binary_k2_truth.json` holds the truth). We fit two experts with a random
intercept (the slopes' variances are barely identified by binary data; Section 3 fits them).
""")

code("""
sim = pd.read_csv(DATA / "sim_binary_k2.csv")
truth = json.loads((DATA / "sim_binary_k2_truth.json").read_text())
print(f"{sim.subject.nunique()} subjects, {len(sim)} visits, {sim.y.mean():.1%} ones")

MODEL = dict(gate_formula="~ x1 + x2", n_experts=2, family="binomial")
sim_model = MEMoE.from_formula("y ~ time", sim, "subject", nAGQ=NAGQ, **MODEL)
res2, wall, cpu = timed(lambda: sim_model.fit(n_starts=N_STARTS, random_state=SEED))
print(f"fit: {wall:.1f} s ({cpu:.1f} s CPU), {res2.n_iter} EM iterations")
print(res2.summary())
""", tags=("glmm-sim-summary",))

md(r"""
pymemoe numbers the experts by size (expert 1 the largest, the gating reference); the truth
numbers them the other way round. Matched by the sign of the slope:
""")

code("""
def matched_truth(res, truth):
    \"\"\"The truth in the fit's expert order (matched by the sign of the time slope) and
    gating reference.\"\"\"
    beta, D, gamma = (np.array(truth[key]) for key in ("beta", "D", "gamma"))
    order = [int(np.argmin(np.abs(beta[:, 1] - b))) for b in res.fe_params.loc["time"]]
    gamma = gamma[order] - gamma[order][0]
    return beta[order], D[order], gamma


beta_t, D_t, gamma_t = matched_truth(res2, truth)
se = res2.bse
table = []
for (block, k, term), value in res2.params.items():
    true = {"gate": lambda: gamma_t[k - 1][["Intercept", "x1", "x2"].index(term)],
            "beta": lambda: beta_t[k - 1][["Intercept", "time"].index(term)],
            "re_cov": lambda: D_t[k - 1][0, 0]}[block]()
    table.append({"parameter": f"{block}[{k}] {term}", "truth": true, "estimate": value,
                  "std err": se[(block, k, term)], "z": (value - true) / se[(block, k, term)]})
print(pd.DataFrame(table).round(3).to_string(index=False))
print(f"\\nllf {res2.llf:.2f}; at the truth with a random slope, 20 nodes: "
      f"{truth['llf_truth_agq20']:.2f}")
""", tags=("glmm-sim-truth",))

code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
plot_trajectories(res2, "time", ax=axes[0])
plot_fit(res2, "time", ax=axes[1])
axes[1].set_title("Observed proportions (posterior-weighted, 95% CI)\\nand expert means, by time bin")
for ax in axes:
    ax.set_ylim(0, 1)
fig.tight_layout()
""", tags=("glmm-figure-binary",))

md(r"""
### Predictions and classification of a new subject

A new subject with the covariates of subject 7 and its first three visits observed; its later
visits are to be predicted (`NaN` outcome). `predict_class` gives its posterior expert
probabilities from the observed visits, `prior_class` those of its covariates alone.
""")

code("""
new = sim[sim["subject"] == 7].sort_values("time").assign(subject="new")
observed = new["y"].copy()
new.loc[new.index[3:], "y"] = np.nan                  # visits 4 onwards are the future
print("covariates: x1 = %.2f, x2 = %d; observed y: %s; later y (hidden): %s"
      % (new.x1.iloc[0], new.x2.iloc[0], observed.iloc[:3].astype(int).tolist(),
         observed.iloc[3:].astype(int).tolist()))
print("\\nprior (gating):    ", res2.prior_class(new).round(3).to_numpy()[0])
print("posterior (3 visits):", res2.predict_class(new).round(3).to_numpy()[0])
pred = res2.get_prediction(new, kind="conditional").summary_frame()
pred.insert(0, "time", new["time"]); pred.insert(1, "y", observed)
pred["marginal"] = res2.predict(new)
print(pred.round(3).to_string())
print("\\nexpert means E[P(y = 1) | expert k] on a grid:")
print(res2.predict(pd.DataFrame({"time": [0.0, 2.5, 5.0]}), kind="expert").round(3).to_string())
""", tags=("glmm-sim-predict",))

code("""
ax = plot_posterior(res2)
ax.figure.set_size_inches(6, 3.8)
ax.figure.tight_layout()
""", tags=("glmm-figure-posterior",))

# ---------------------------------------------------------------------------------------------

md(r"""
## 3. The Laplace approximation against quadrature

One expert with a random intercept and slope on the same data, at increasing numbers of nodes
per random effect (`nAGQ**2` nodes per subject); the last column is the log-likelihood at each
fit's estimates computed with 20 nodes. With `nAGQ=1` the fit is glmer's.
""")

code("""
k1_20 = MEMoE.from_formula("y ~ time", sim, "subject", re_formula="~ time", n_experts=1,
                           family="binomial", nAGQ=20)
rows = []
for nAGQ in AGQ_GRID:
    model = MEMoE.from_formula("y ~ time", sim, "subject", re_formula="~ time", n_experts=1,
                               family="binomial", nAGQ=nAGQ)
    res, wall, cpu = timed(lambda: model.fit(cov_type="none"))
    D = res.cov_re[1].to_numpy()
    rows.append({"nAGQ": nAGQ, "nodes": nAGQ ** 2, "llf": res.llf,
                 "Var(Intercept)": D[0, 0], "Var(time)": D[1, 1],
                 "fit s": wall, "fit CPU s": cpu, "llf, 20 nodes": k1_20.loglike(res.params)})
print(pd.DataFrame(rows).round(4).to_string(index=False))
print(f"\\nglmer (Laplace): llf {GLMER['bin_k1_slope_laplace']['llf']:.4f}, Var(Intercept) "
      f"{GLMER['bin_k1_slope_laplace']['re_cov']['subject'][0][0]:.4f}, Var(time) "
      f"{GLMER['bin_k1_slope_laplace']['re_cov']['subject'][1][1]:.4f}")
""", tags=("glmm-agq-grid",))

md(r"""
The two-expert model of the truth (random intercept and slope in each expert), fitted with
the Laplace approximation and with quadrature, against the truth:
""")

code("""
slope = dict(re_formula="~ time", **MODEL)
k2_20 = MEMoE.from_formula("y ~ time", sim, "subject", nAGQ=20, **slope)
fits, rows = {}, []
for nAGQ in (1, NAGQ):
    model = MEMoE.from_formula("y ~ time", sim, "subject", nAGQ=nAGQ, **slope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits[nAGQ], wall, cpu = timed(lambda: model.fit(n_starts=N_STARTS, random_state=SEED,
                                                        cov_type="none"))
    rows.append({"fit": f"nAGQ = {nAGQ}", "llf": fits[nAGQ].llf,
                 "llf, 20 nodes": k2_20.loglike(fits[nAGQ].params),
                 "fit s": wall, "fit CPU s": cpu})
print(pd.DataFrame(rows).round(3).to_string(index=False))
print(f"at the truth: Laplace {truth['llf_truth_laplace']:.3f}, 20 nodes "
      f"{truth['llf_truth_agq20']:.3f}")

print("\\nrandom-effects covariances (expert matched to the truth by its slope):")
D_rows = []
for label, res in (("truth", None), ("nAGQ = 1", fits[1]), (f"nAGQ = {NAGQ}", fits[NAGQ])):
    for k in range(2):
        if res is None:
            D, slope_k = np.array(truth["D"][k]), truth["beta"][k][1]
        else:
            b = res.fe_params.loc["time"].to_numpy()
            j = int(np.argmin(np.abs(b - truth["beta"][k][1])))
            D, slope_k = res.cov_re[j + 1].to_numpy(), b[j]
        D_rows.append({"": label, "expert (true slope)": f"{truth['beta'][k][1]:+.1f}",
                       "slope": slope_k, "Var(Intercept)": D[0, 0], "Cov": D[0, 1],
                       "Var(time)": D[1, 1], "corr": D[0, 1] / np.sqrt(D[0, 0] * D[1, 1])})
print(pd.DataFrame(D_rows).round(3).to_string(index=False))
""", tags=("glmm-laplace-k2",))

# ---------------------------------------------------------------------------------------------

md(r"""
## 4. Counts

### MASS's epil against glmer

Seizure counts of 59 patients at four two-week visits (Thall and Vail 1990):
`glmer(y ~ lbase * trt + lage + V4 + (1 | subject), family = poisson)`. lme4's log-likelihood
of a Poisson model with `nAGQ > 1` omits the saturated model's (the sum over rows of
$y \log y - y - \log y!$); we add it back to compare.
""")

code("""
epil = pd.read_csv(DATA / "epil.csv")
epil["trt"] = pd.Categorical(epil["trt"], ["placebo", "progabide"])
y = epil["y"].to_numpy(dtype=float)
saturated = float(np.sum(np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0) - y - gammaln(y + 1)))
rows = []
for nAGQ, ref, shift in ((1, "epil_laplace", 0.0), (25, "epil_agq25", saturated)):
    res = MEMoE.from_formula("y ~ lbase * trt + lage + V4", epil, "subject", n_experts=1,
                             family="poisson", nAGQ=nAGQ).fit()
    rows.append({"nAGQ": nAGQ, "pymemoe llf": res.llf, "glmer logLik": GLMER[ref]["llf"],
                 "glmer llf": GLMER[ref]["llf"] + shift,
                 "difference": res.llf - GLMER[ref]["llf"] - shift,
                 "Var(Intercept)": res.cov_re[1].to_numpy()[0, 0],
                 "glmer Var": GLMER[ref]["re_cov"]["subject"][0][0]})
print(f"saturated log-likelihood: {saturated:.3f}")
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.5g}"))
""", tags=("glmm-epil",))

md(r"""
### A Poisson mixture with exposure (simulated, known truth)

600 subjects, counts over an exposure time (`exposure`, between 0.5 and 2), two experts with a
random intercept, gating on `x1 + x2`. `exposure="exposure"` adds $\log(\text{exposure})$ to
the linear predictor, so the coefficients are those of the rate per unit exposure.
""")

code("""
counts = pd.read_csv(DATA / "sim_poisson_k2.csv")
ptruth = json.loads((DATA / "sim_poisson_k2_truth.json").read_text())
print(f"{counts.subject.nunique()} subjects, {len(counts)} rows; exposure from "
      f"{counts.exposure.min()} to {counts.exposure.max()}, mean {counts.exposure.mean():.2f}")
print(f"truth: beta {ptruth['beta']}, random-intercept SDs "
      f"{[round(float(np.sqrt(d[0][0])), 3) for d in ptruth['D']]}; log-likelihood at the "
      f"truth: Laplace {ptruth['llf_truth_laplace']:.3f}, 20 nodes {ptruth['llf_truth_agq20']:.3f}")
COUNT_MODEL = dict(gate_formula="~ x1 + x2", n_experts=2, family="poisson")
count_model = MEMoE.from_formula("y ~ time", counts, "subject", exposure="exposure",
                                 nAGQ=NAGQ, **COUNT_MODEL)
res_p, wall, cpu = timed(lambda: count_model.fit(n_starts=N_STARTS, random_state=SEED))
print(f"fit: {wall:.1f} s ({cpu:.1f} s CPU); llf {res_p.llf:.3f}")
print(res_p.summary())

# the same model written with an offset: log(exposure) as a column
offset_model = MEMoE.from_formula("y ~ time", counts.assign(log_exposure=np.log(counts["exposure"])),
                                  "subject", offset="log_exposure", nAGQ=NAGQ, **COUNT_MODEL)
print(f"\\nwith offset='log_exposure' the log-likelihood at these estimates is "
      f"{offset_model.loglike(res_p.params):.6f}")
""", tags=("glmm-poisson-summary",))

md(r"""
Predictions are expected counts over the exposure of each row: new data must hold the exposure
column (or the offset column). Per unit exposure, set it to 1.
""")

code("""
new = pd.DataFrame({"subject": "new", "time": [0.0, 2.0, 4.0], "exposure": [1.0, 1.0, 2.0],
                    "x1": 0.0, "x2": 1, "y": np.nan})
frame = res_p.get_prediction(new).summary_frame()
frame.insert(0, "time", new["time"]); frame.insert(1, "exposure", new["exposure"])
print("marginal expected count of a new subject (x1 = 0, x2 = 1):")
print(frame.round(3).to_string(index=False))
print("\\nexpert means:")
print(res_p.predict(new, kind="expert").round(3).to_string())
try:
    res_p.predict(new.drop(columns="exposure"))
except ValueError as err:
    print(f"\\nwithout the exposure column: ValueError: {err}")
""", tags=("glmm-poisson-predict",))

code("""
grid = pd.DataFrame({"time": np.linspace(0, 5, 51), "exposure": 1.0})
curves = res_p.get_prediction(grid, kind="expert").summary_frame()
fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
for k in (1, 2):
    part = curves.xs(k, level="expert")
    n_k = int((res_p.predicted_class == k).sum())
    axes[0].fill_between(grid["time"], part["mean_ci_lower"], part["mean_ci_upper"],
                         color=f"C{k - 1}", alpha=0.3, lw=0)
    axes[0].plot(grid["time"], part["mean"], color=f"C{k - 1}", lw=2.5,
                 label=f"expert {k} ({n_k} subjects)")
axes[0].legend(title="expert means, 95% confidence bands", fontsize="small",
               title_fontsize="small", loc="upper left")
axes[0].set(xlabel="time", ylabel="expected count per unit exposure",
            title="Expected counts by expert (K = 2)")
plot_fit(res_p, "time", ax=axes[1])
axes[1].set_title("Observed counts (posterior-weighted, 95% CI)\\nand expert means, by time bin")
fig.tight_layout()
""", tags=("glmm-figure-counts",))

# ---------------------------------------------------------------------------------------------

md(r"""
## 5. Two-column outcomes, prediction sets, bad input

### Successes and failures

Binomial outcomes with several trials per row are written `successes + failures ~ ...`
(statsmodels' GLM form). Here bacteria's visits are pooled per child before and after week 2.
The estimates are those of the binary fit; the log-likelihood differs by the constant
$\sum \log\binom{m}{y}$.
""")

code("""
pooled = (bacteria.groupby(["ID", "trt", "wk2"], observed=True)["yn"]
          .agg(positive="sum", visits="size").reset_index())
pooled["negative"] = pooled["visits"] - pooled["positive"]
print(pooled.head(4).to_string(index=False))
binary = bacteria_k1(1)
two_col = MEMoE.from_formula("positive + negative ~ trt + wk2", pooled, "ID", n_experts=1,
                             family="binomial").fit()
constant = float(np.sum(gammaln(pooled.visits + 1) - gammaln(pooled.positive + 1)
                        - gammaln(pooled.negative + 1)))
print(f"\\nllf: binary rows {binary.llf:.6f}; pooled {two_col.llf:.6f}; pooled minus "
      f"sum log C(m, y) = {constant:.6f}: {two_col.llf - constant:.6f}")
print(f"largest |difference| of the estimates: {np.abs(two_col.params - binary.params).max():.1e}")
print("predictions of the pooled model are proportions:",
      two_col.predict(pooled.head(2)).round(3).tolist())
""", tags=("glmm-two-column",))

md(r"""
### Prediction sets

Prediction sets are intervals of a predictive density, so they exist for Gaussian experts
only; for a binary outcome the predictive law of a visit is Bernoulli($p$) with $p$ the
prediction, and a set of level 0.95 is $\{1\}$ when $p \ge 0.95$, $\{0\}$ when $p \le 0.05$,
$\{0, 1\}$ otherwise.
""")

code("""
visits = sim[sim["subject"] == 7]
for call in (lambda: res2.prediction_set(visits),
             lambda: res2.get_prediction(visits, kind="marginal").prediction_set()):
    try:
        call()
    except ValueError as err:
        print(f"ValueError: {err}")
p = res2.predict(visits, kind="conditional").to_numpy()
sets = np.where(p >= 0.95, "{1}", np.where(p <= 0.05, "{0}", "{0, 1}"))
print("\\nP(y = 1), subject 7:", p.round(3).tolist())
print("95% sets:           ", sets.tolist())
""", tags=("glmm-prediction-sets",))

md(r"""
### Bad input

Each error names the problem and the remedy.
""")

code("""
def error(build):
    try:
        build()
    except (ValueError, TypeError) as err:
        return textwrap.fill(f"{type(err).__name__}: {err}", 92, initial_indent="    ",
                             subsequent_indent="    ")
    return "no error"


b = bacteria
cases = {
    "outcome not 0/1": lambda: MEMoE.from_formula("week ~ trt", b, "ID", n_experts=1,
                                                  family="binomial"),
    "counts not integers": lambda: MEMoE.from_formula("I(yn / 2) ~ trt", b, "ID", n_experts=1,
                                                      family="poisson"),
    "exposure not positive": lambda: MEMoE.from_formula("yn ~ trt", b, "ID", n_experts=1,
                                                        family="poisson", exposure="week"),
    "offset with Gaussian experts": lambda: MEMoE.from_formula("yn ~ trt", b, "ID", n_experts=1,
                                                               offset="week"),
    "residual variance for binary": lambda: MEMoE.from_formula("yn ~ trt", b, "ID", n_experts=1,
                                                               family="binomial", scale="shared"),
    "nAGQ > 1 with 4 random effects": lambda: MEMoE.from_formula(
        "yn ~ week", b, "ID", re_formula="~ week + wk2 + I(week ** 2)", n_experts=1,
        family="binomial", nAGQ=5),
    "unknown family": lambda: MEMoE.from_formula("yn ~ trt", b, "ID", family="gamma"),
    "prediction band": lambda: plot_trajectories(res2, "time", band="prediction"),
}
for name, build in cases.items():
    print(f"{name}:\\n{error(build)}")
""", tags=("glmm-errors",))

code("""
print(f"N_STARTS = {N_STARTS}, NAGQ = {NAGQ}, K_MAX = {K_MAX}, AGQ_GRID = {AGQ_GRID}")
print(f"whole notebook: {time.perf_counter() - _start:.0f} s")
""", tags=("glmm-numbers",))


# ---------------------------------------------------------------------------------------------


def build():
    """The notebook, with stable cell ids and no outputs."""
    return _cells.build()


def main(argv: list[str] | None = None) -> int:
    return notebook_main(build, NOTEBOOK, argv)


if __name__ == "__main__":
    sys.exit(main())
