"""Build ``notebooks/pbcseq.ipynb``, the PBCseq case study, from the cells below.

The notebook is stored executed, so that its tables and figures can be read on GitHub and
the documentation shows its figures (``docs/conf.py`` takes them from the stored outputs). Edit
the cells here, not in the .ipynb, and regenerate and execute it with::

    python notebooks/make_pbcseq.py --execute        # a few minutes: the parameters of the analysis
    python notebooks/make_pbcseq.py                  # the cells only, outputs cleared

``tests/test_notebooks.py`` checks that the .ipynb is the one this script writes and executes
it with small parameters (cell tagged ``parameters``).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "pbcseq.ipynb"
sys.path.insert(0, str(HERE))
from notebook_builder import Cells, main as notebook_main  # noqa: E402

_cells = Cells("pbcseq")
md, code = _cells.md, _cells.code


# ---------------------------------------------------------------------------------------------
# Title and set-up

md(r"""
# Case study: latent trajectories of log bilirubin in primary biliary cholangitis (PBCseq)

Primary biliary cholangitis (PBC) is a chronic autoimmune disease of the small bile ducts of the
liver. Serum bilirubin is its strongest single prognostic marker: it rises slowly for years,
then faster as the disease advances. The Mayo Clinic trial of D-penicillamine against placebo
(1974-1984) followed its patients with repeated laboratory tests; the `pbcseq` data of the R
package **survival** hold these follow-up visits.

The question of this case study: **do the patients fall into latent subpopulations whose
bilirubin evolves differently, and do baseline characteristics (age, sex, treatment arm) tell
who belongs where?** The mixed effects mixture of experts (MEMoE) answers both at once. For
patient $i$ with visits $j$ at times $t_{ij}$ (years since enrolment) and baseline covariates
$w_i$,

$$
P(c_i = k \mid w_i) = \pi_{ik} = \frac{\exp(w_i^\top \gamma_k)}{\sum_{l=1}^K \exp(w_i^\top \gamma_l)},
\qquad \gamma_1 = 0 \quad \text{(gating)},
$$

$$
\log \mathrm{bili}_{ij} \mid c_i = k, b_i = \beta_{0k} + \beta_{1k} t_{ij} + b_{0i} + b_{1i} t_{ij} + \varepsilon_{ij},
\qquad b_i \sim N(0, D_k), \quad \varepsilon_{ij} \sim N(0, \sigma^2_k) \quad \text{(experts)}.
$$

Each expert $k$ is a full linear mixed model with its own mean trajectory, random-effects
covariance and residual variance. With $K = 1$ the model is the ordinary linear mixed model
(LMM) fitted by maximum likelihood; without random effects it is the conventional mixture of
experts (MoE).

What we do:

1. explore the data;
2. fit $K = 1, \dots, 4$ experts and choose $K$;
3. read the chosen model (robust standard errors, posterior classification, experts, gating);
4. compare it with the LMM and the MoE by information criteria and by subject-level
   cross-validated prediction error;
5. draw 95% prediction sets for held-out patients (the paper's Figure 5) and measure their
   empirical coverage;
6. export the tables for a paper.

Every number quoted below is computed and printed by the notebook; the prose says how to read
it.
""")

md(r"""
## Parameters

The values in the next cell are what we recommend for an analysis: many random starts for the
EM algorithm (the mixture likelihood has local maxima) and 10-fold cross-validation. With them
the notebook runs in a few minutes on a laptop. The test suite of pymemoe executes this
notebook with `N_STARTS = 3` and `N_FOLDS = 3` to stay fast; results from such a run are
rougher (a fit may miss the best maximum) but the code paths are the same.
""")

code("""
N_STARTS = 20        # EM starts per fit (10 or more for real work)
N_FOLDS = 10         # folds of the subject-level cross-validation
K_MAX = 4            # largest number of experts compared
SEED = 1             # seeds the starts, the folds and the train/test split
LANDMARK = 2.0       # years: Figure 5 predicts the visits after it from those up to it
TEST_FRACTION = 1 / 3  # share of patients held out for Figure 5
""", tags=("parameters",))

code("""
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import pymemoe
from pymemoe import MEMoE, compare_experts, cross_validate
from pymemoe.datasets import load_pbcseq
from pymemoe.plotting import (plot_fit, plot_posterior, plot_prediction_sets, plot_residuals,
                              plot_trajectories)
from pymemoe.prediction import coverage
from pymemoe.summary import summary_col

%matplotlib inline
pd.set_option("display.width", 120)
pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 30)
_start = time.perf_counter()
print(f"pymemoe {pymemoe.__version__}, numpy {np.__version__}, pandas {pd.__version__}")
""")

# ---------------------------------------------------------------------------------------------
# 1. Exploration

md(r"""
## 1. The data

`load_pbcseq()` returns one row per visit. We measure time in years since enrolment and model
bilirubin on the log scale, where within-patient trajectories are close to straight lines and
the residuals close to normal.
""")

code("""
df = load_pbcseq()
df = df.sort_values(["id", "day"], kind="stable")
df["year"] = df["day"] / 365.25
df["log_bili"] = np.log(df["bili"])

STATUS = {0: "censored", 1: "transplant", 2: "dead"}
patients = df.groupby("id").agg(
    n_visits=("year", "size"), last_visit=("year", "max"), status=("status", "first"),
    age=("age", "first"), sex=("sex", "first"), trt=("trt", "first"),
    log_bili0=("log_bili", "first"))
patients["outcome"] = patients["status"].map(STATUS)

print(f"{len(df)} visits of {len(patients)} patients")
print(f"visits per patient: median {patients.n_visits.median():.0f}, "
      f"range {patients.n_visits.min()} to {patients.n_visits.max()}")
print(f"years from enrolment to the last visit: median {patients.last_visit.median():.1f}, "
      f"maximum {patients.last_visit.max():.1f}")
print(f"age at enrolment: mean {patients.age.mean():.1f} (SD {patients.age.std():.1f}) years; "
      f"{100 * (patients.sex == 'f').mean():.0f}% women; "
      f"{100 * (patients.trt == 1).mean():.0f}% randomised to D-penicillamine")
print("\\nstatus at the end of follow-up (patients):")
print(patients["outcome"].value_counts().to_string())
""")

md(r"""
The visits follow the trial's protocol: enrolment, six months, one year, then yearly, with
extra visits when the patient's condition required. Patients enrolled late in the trial, and
patients who died or received a transplant, contribute few visits.
""")

code("""
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].hist(df["year"], bins=np.arange(0, df["year"].max() + 0.25, 0.25), color="0.4")
axes[0].set(xlabel="years since enrolment", ylabel="visits", title="When the visits happen")
counts = patients["n_visits"].value_counts().sort_index()
axes[1].bar(counts.index, counts.to_numpy(), color="0.4")
axes[1].set(xlabel="visits per patient", ylabel="patients", title="How many visits per patient")
fig.tight_layout()
""")

md(r"""
### Spaghetti plot

One line per patient. On the left, the thick line is the mean of the observed log bilirubin
by year of follow-up; on the right the patients are coloured by how their follow-up ended.
""")

code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
died = patients["status"] > 0                        # death or liver transplant
for pid, visits in df.groupby("id"):
    axes[0].plot(visits["year"], visits["log_bili"], color="0.5", lw=0.5, alpha=0.4)
    axes[1].plot(visits["year"], visits["log_bili"], lw=0.5, alpha=0.5,
                 color="C3" if died.loc[pid] else "C0")
by_year = df.groupby(df["year"].round())["log_bili"].agg(["size", "mean"])
axes[0].plot(by_year.index, by_year["mean"], color="k", lw=2.5, marker="o",
             label="mean of the observed values")
axes[0].legend(loc="upper right")
axes[0].set(xlabel="years since enrolment", ylabel="log(bilirubin, mg/dl)",
            title="All patients")
axes[1].plot([], [], color="C3", label=f"died or transplanted ({int(died.sum())})")
axes[1].plot([], [], color="C0", label=f"alive at the end ({int((~died).sum())})")
axes[1].legend(loc="upper right")
axes[1].set(xlabel="years since enrolment", title="By the end of follow-up")
fig.tight_layout()

print("mean log bilirubin at enrolment:")
print(patients.groupby(died.map({True: "died or transplanted", False: "alive at the end"}))
      ["log_bili0"].agg(["size", "mean"]).to_string())
print("\\nobserved log bilirubin by year of follow-up (rounded):")
print(by_year.rename(columns={"size": "visits"}).T.round(2).to_string())
""")

md(r"""
**How to read it.** Patients differ both in their level at enrolment and in how fast
bilirubin climbs: this is what the random intercept and slope of a mixed model describe. The
right panel suggests more than continuous variation around one mean: the patients who died or
were transplanted start higher and climb faster, while many others stay low and flat for
years. A mixture of experts lets such groups have their own mean trajectory and their own
spread.

Note also the left panel: the mean of the *observed* values hardly rises with time, although
most individual lines do. The sickest patients leave the study early (death, transplant), so
the later years are increasingly made of the healthier patients. This is informative dropout.
The likelihood-based models below assume the visits are missing at random given each patient's
earlier values and latent class, so their mean trajectories describe patients *while they
remain in follow-up*, not the survivors' average. Keep this in mind when we score marginal
predictions in Section 4.
""")

# ---------------------------------------------------------------------------------------------
# 2. Choosing K

md(r"""
## 2. Fits for K = 1, ..., 4 and the choice of K

Every model has the same parts:

* **experts**: `np.log(bili) ~ year`, an intercept and a slope per expert, and a random
  intercept and slope per patient (`re_formula="~ year"`) with an unstructured covariance
  $D_k$ and a residual variance $\sigma^2_k$ per expert;
* **gating**: `~ age + C(sex) + C(trt)`, a multinomial logit on the baseline age (years), sex
  (reference: female, the first level in sorted order) and treatment arm (reference: placebo,
  `trt = 0`).

`compare_experts` fits each $K$ from `N_STARTS` random starts (EM, then a quasi-Newton
polish) and keeps the best. The fits use the default observed-information standard errors; we
only need their log-likelihoods here and refit the chosen model with robust standard errors
below.
""")

code("""
FORMULA = "np.log(bili) ~ year"
MODEL = dict(re_formula="~ year", gate_formula="~ age + C(sex) + C(trt)")

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    comparison = compare_experts(FORMULA, df, "id", n_experts=range(1, K_MAX + 1),
                                 n_starts=N_STARTS, random_state=SEED, **MODEL)
comparison.table
""", tags=("comparison-table",))

md(r"""
**How to read the table.** `llf` is the maximised log-likelihood and `df` the number of
parameters (each extra expert adds an intercept and a slope, three parameters of $D_k$, a
residual variance and one gating coefficient per gating column). AIC adds 2 per parameter;
BIC adds $\log N$ per parameter with $N$ the number of **patients** (the convention of the R
package lcmm); SABIC is a sample-size adjusted BIC; ICL is BIC plus twice the entropy of the
posterior classification, so it also penalises experts that overlap. `entropy` is normalised:
1 means every patient is classified with certainty. `%k` is the share of patients whose most
probable expert is $k$ (experts are ordered by size).

The next cell shows how many of the starts reached the best log-likelihood (a check that
`N_STARTS` is enough: with few starts reaching the best, use more), which criterion prefers
which $K$, and the parameters whose standard error could not be computed, a sign that a model
has more experts than the data support.
""")

code("""
starts = pd.DataFrame({
    "starts": [len(r.start_llfs) for r in comparison.results.values()],
    "reaching best llf (within 0.01)": [int((r.start_llfs > r.llf - 0.01).sum())
                                        for r in comparison.results.values()],
}, index=pd.Index(list(comparison.results), name="K"))
print(starts.to_string(), "\\n")

chosen = {c: int(comparison.table[c].idxmin()) for c in ("AIC", "BIC", "SABIC", "ICL")}
for criterion, K in chosen.items():
    print(f"{criterion:>5} prefers K = {K}")

for K, r in comparison.results.items():
    no_se = [name for name, se in zip(r.param_names, r.bse) if not np.isfinite(se)]
    if no_se or r.messages:
        print(f"\\nK = {K}: no standard error for {', '.join(no_se) or 'none'}")
        for message in r.messages:
            print(f"  fit message: {message}")
print(f"\\n{len(caught)} warning(s) during the fits")

K_BEST = chosen["BIC"]
print(f"\\nWe follow BIC: K = {K_BEST} experts.")
""")

code("""
ax = comparison.plot(criteria=("AIC", "BIC", "SABIC", "ICL"))
ax.figure.set_size_inches(7, 4)
""", tags=("figure-comparison",))

md(r"""
**Choosing K.** We choose $K$ by BIC: it estimates the number of mixture components
consistently and is the usual choice for latent-class mixed models. AIC's penalty is lighter,
so it tends to keep adding experts while the log-likelihood still improves; a small extra
expert, or standard errors that cannot be computed, says that the extra expert fits a handful
of patients rather than a subpopulation. ICL favours fewer, well separated experts: where it
disagrees with BIC, the additional experts of the BIC choice describe the *distribution* of the
trajectories well but do not sort patients into clearly distinct groups. Look at the entropy of
the chosen model alongside: the posterior classification table below says how clearly each
patient is assigned.
""")

# ---------------------------------------------------------------------------------------------
# 3. The chosen model

md(r"""
## 3. The chosen model with robust standard errors

We refit the chosen $K$ with the same starts and seed, so the estimates are those of the
comparison, and ask for the **robust** (subject-level sandwich) covariance: it stays valid if
the within-patient distribution is misspecified (heavier tails than normal, residual variance
changing with the level, curvature the straight lines miss), which is plausible for a
laboratory marker.
""")

code("""
model = MEMoE.from_formula(FORMULA, df, "id", n_experts=K_BEST, **MODEL)
res = model.fit(n_starts=N_STARTS, random_state=SEED, cov_type="robust")
best = comparison.results[K_BEST]
assert np.isclose(res.llf, best.llf), (res.llf, best.llf)
print(res.summary())
""", tags=("summary",))

md(r"""
**How to read the summary.** The header gives the fit (log-likelihood, criteria, entropy,
convergence). The **gating** table holds the log odds of belonging to expert $k$ rather than to
expert 1 (the largest) per unit of each covariate. Each **expert** table gives the mean
trajectory (`Intercept`: mean log bilirubin at enrolment; `year`: mean change per year), then
the standard deviations of the random intercepts and slopes between the expert's patients,
their correlation and the residual (visit-to-visit) SD, with delta-method standard errors.
The last table is the posterior classification.

How much do the robust standard errors differ from the model-based ones? A ratio well above 1
points to misspecification that the model-based errors ignore.
""")

code("""
se = pd.DataFrame({"estimate": best.params, "SE (observed information)": best.bse,
                   "SE (robust)": res.bse})
se["robust / model-based"] = se["SE (robust)"] / se["SE (observed information)"]
se.loc[["gate", "beta"]] if K_BEST > 1 else se.loc[["beta"]]
""")

md(r"""
### Posterior classification

`postprob()` is lcmm's table of the same name with the classification diagnostics of the
GRoLTS reporting checklist: patients are assigned to their most probable expert; for each
expert, the share of patients assigned and its estimated share (the mean posterior
probability), the mean posterior probabilities of its patients (the diagonal, AvePP, should be
0.7 or more), the odds of correct classification OCC (above 5 is adequate) and the shares of
its patients assigned with probability above 0.7, 0.8 and 0.9.
""")

code("""
res.postprob()
""")

md(r"""
### The experts

Back on the bilirubin scale, $\exp(\beta_{0k})$ is the typical (geometric mean) bilirubin of
expert $k$ at enrolment and $\exp(\beta_{1k})$ its multiplicative change per year, so
$100\,(\exp(\beta_{1k}) - 1)$ is a percentage change per year and $\log 2 / \beta_{1k}$ a
doubling time. For reference, the upper limit of normal of serum bilirubin is about 1 mg/dl.
The survival outcome was **not** used in the fit, so how the experts differ in death and
transplant during follow-up is an external check that they are clinically meaningful.
""")

code("""
ci = res.conf_int()
assigned = res.predicted_class.rename("expert")
outcome = patients.join(assigned)
rows = {}
for k in range(1, K_BEST + 1):
    b0, b1 = res.params[("beta", k, "Intercept")], res.params[("beta", k, "year")]
    lo0, hi0 = ci.loc[("beta", k, "Intercept")]
    lo1, hi1 = ci.loc[("beta", k, "year")]
    members = outcome[outcome["expert"] == k]
    rows[k] = {
        "patients (posterior %)": 100 * res.posterior[k].mean(),
        "bili at enrolment, mg/dl": np.exp(b0),
        "  95% CI (bili)": f"{np.exp(lo0):.2f} to {np.exp(hi0):.2f}",
        "change per year, %": 100 * np.expm1(b1),
        "  95% CI (change)": f"{100 * np.expm1(lo1):+.1f} to {100 * np.expm1(hi1):+.1f}",
        "doubling time, years": np.log(2) / b1 if b1 > 0 else np.nan,
        "SD of patient slopes": np.sqrt(res.cov_re[k].loc["year", "year"]),
        "residual SD": np.sqrt(res.scale[k]),
        "died or transplanted, %": 100 * (members["status"] > 0).mean(),
        "mean age": members["age"].mean(),
        "men, %": 100 * (members["sex"] == "m").mean(),
        "D-penicillamine, %": 100 * (members["trt"] == 1).mean(),
    }
experts = pd.DataFrame(rows)
experts.columns.name = "expert"
print(experts.to_string(float_format=lambda x: f"{x:.2f}"), "\\n")
for k, col in experts.items():
    print(f"Expert {k} ({col['patients (posterior %)']:.0f}% of patients): bilirubin about "
          f"{col['bili at enrolment, mg/dl']:.2f} mg/dl at enrolment, changing by "
          f"{col['change per year, %']:+.1f}% per year (95% CI {col['  95% CI (change)']}); "
          f"{col['died or transplanted, %']:.0f}% of its patients died or were transplanted.")
""", tags=("experts",))

md(r"""
The figure shows the same experts: each patient's trajectory coloured by the expert it is
assigned to, and each expert's mean trajectory $\beta_{0k} + \beta_{1k} t$ (thick line) with
its 95% pointwise confidence band (delta method from the robust covariance; the band is the
uncertainty of the mean curve, not the spread of the patients).
""")

code("""
ax = plot_trajectories(res, "year", ylabel="log(bilirubin, mg/dl)")
ax.set_xlabel("years since enrolment")
ax.figure.set_size_inches(9, 5)
""", tags=("figure-trajectories",))

md(r"""
The expert means and their standard errors at a few times, as numbers
(`res.get_prediction(grid, kind="expert").summary_frame()`, statsmodels' columns):
""")

code("""
grid = pd.DataFrame({"year": [0.0, 2.0, 5.0, 10.0]})
expert_means = res.get_prediction(grid, kind="expert").summary_frame()
expert_means.index = expert_means.index.set_levels(grid["year"].to_numpy(), level=0)
expert_means.index.names = ["year", "expert"]
expert_means.round(3)
""", tags=("expert-means",))

md(r"""
The largest posterior probability of each patient, by assigned expert: bars piled near 1
mean clear assignments. The GRoLTS checklist for latent trajectory studies asks for the
average posterior probability of each class (AvePP, Nagin's rule of thumb 0.7) and the odds
of correct classification (OCC, above 5): both are columns of `res.postprob()` above.
""")

code("""
if K_BEST > 1:
    ax = plot_posterior(res)
    ax.figure.set_size_inches(7, 4)
else:
    print("K = 1: every patient is in the one expert.")
""", tags=("figure-posterior",))

md(r"""
### Model checking

Two checks of the experts, both computed from the fitted model. First, lcmm's
`plot(m, which = "fit")`: in bins of follow-up time, the mean observed log bilirubin of each
expert's patients (weighted by their posterior probabilities, with a 95% interval) against the
expert's mean trajectory weighted the same way (`plotting.plot_fit`). Second, the standardised
residuals (`plotting.plot_residuals`): each patient's residuals whitened by the expert's
covariance $V_{ik} = Z_i D_k Z_i^\top + \sigma^2_k I$ and weighted by the posterior, which are
independent standard normal when the model is right: histogram against the $N(0, 1)$
density, normal QQ plot, and residuals against the fitted expert means.
""")

code("""
ax = plot_fit(res, "year", bins=10, ylabel="log(bilirubin, mg/dl)")
ax.set_xlabel("years since enrolment (mean of each bin)")
ax.figure.set_size_inches(9, 5)
""", tags=("figure-fit",))

code("""
axes = plot_residuals(res)
r = res.standardized_residuals()
print(f"standardised residuals: mean {r.mean():.3f}, SD {r.std():.3f}, "
      f"skewness {r.skew():.2f}, excess kurtosis {r.kurt():.2f}; "
      f"{100 * (r.abs() > 3).mean():.1f}% beyond 3 (0.3% for a normal)")
""", tags=("figure-residuals",))

md(r"""
**How to read the checks.** Where the observed means of an expert leave the line of its
predicted means, the straight line misses the expert's patients there; in PBCseq the observed
means of the fast-progressing experts flatten in the late years while the line keeps rising:
the informative dropout of Section 1 (the sickest patients leave), not a failure of the
within-patient model, which the likelihood fits under missingness at random. With the
subject-specific predictions (`plot_fit(res, "year", kind="conditional")`) the lines follow the
observed means closely. The residual plots check the Gaussian expert itself: a straight QQ
plot and a histogram on the normal density support it; tails heavier than normal would favour
the robust standard errors used here.
""")

md(r"""
### The gating: who belongs to which expert?

The gating coefficients are log odds ratios against expert 1. Exponentiated, they are odds
ratios: an odds ratio above 1 makes membership of expert $k$ (rather than expert 1) more likely.
Age is reported per 10 years. Wald tests with the robust covariance then ask whether each
covariate matters at all (jointly over the experts), whether the gating needs any covariate,
and whether the experts really differ in slope, the feature that defines them.
""")

code("""
if K_BEST > 1:
    gate = res.to_frame().query("block == 'gate' and term != 'Intercept'").copy()
    per = np.where(gate["term"] == "age", 10.0, 1.0)
    odds = pd.DataFrame({
        "expert (vs 1)": gate["expert"].to_numpy(),
        "covariate": np.where(per == 10, "age (per 10 years)", gate["term"]),
        "odds ratio": np.exp(per * gate["coef"]).to_numpy(),
        "95% CI lower": np.exp(per * gate["lower"]).to_numpy(),
        "95% CI upper": np.exp(per * gate["upper"]).to_numpy(),
        "p": gate["P>|z|"].to_numpy(),
    })
    print(odds.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
else:
    print("K = 1: there is no gating.")
""", tags=("gating",))

code("""
def wald(hypothesis):
    test = res.wald_test(hypothesis)
    return {"chi2": float(test.statistic), "df": int(test.df_denom), "p": float(test.pvalue)}


if K_BEST > 1:
    others = range(2, K_BEST + 1)
    gate_terms = [t for t in res.gate_params.index if t != "Intercept"]
    tests = {f"gating: {t}": wald([f"gate[{k}]:{t}" for k in others]) for t in gate_terms}
    tests["gating: all covariates"] = wald([f"gate[{k}]:{t}" for k in others for t in gate_terms])
    tests["experts: equal slopes"] = wald([f"beta[1]:year = beta[{k}]:year" for k in others])
    tests["experts: equal intercepts"] = wald([f"beta[1]:Intercept = beta[{k}]:Intercept"
                                               for k in others])
    tests = pd.DataFrame(tests).T
    print(tests.to_string(float_format=lambda x: f"{x:.4g}"))
    significant = [t for t in gate_terms if tests.loc[f"gating: {t}", "p"] < 0.05]
    print(f"\\nat the 5% level: the expert slopes "
          f"{'differ' if tests.loc['experts: equal slopes', 'p'] < 0.05 else 'do not differ'}; "
          f"gating covariates that matter: {', '.join(significant) or 'none'}")
    one = res.wald_test("gate[2]:age")
    print(f"one coefficient: res.wald_test(\\"gate[2]:age\\") gives chi2 = "
          f"{float(one.statistic):.3f}, p = {float(one.pvalue):.3f}")
""", tags=("wald",))

md(r"""
**Reading the gating.** When the experts differ sharply (the slope test) while the gating
tests are not significant, the baseline covariates say little about who belongs to which
expert. That is a finding, not a failure: the subpopulations are revealed by the bilirubin
trajectories, and age, sex and the randomised treatment do not predict them. Treatment in
particular was randomised, so a gating effect of `C(trt)` would mean that D-penicillamine
changes the trajectory class; a non-significant test agrees with the trial's conclusion that
the drug did not alter the course of the disease. In practice, the class of a new patient is
then learnt from its first bilirubin values (`res.predict_class`), not from its baseline
covariates (`res.prior_class`); Sections 4 and 5 use exactly this.
""")

# ---------------------------------------------------------------------------------------------
# 4. Comparison with LMM and MoE

md(r"""
## 4. Comparison with the LMM and the conventional mixture of experts

The two usual alternatives are nested in the MEMoE:

* the **LMM**: one expert ($K = 1$), random intercept and slope;
* the **MoE**: the same $K$ and gating, no random effects (`re_formula="0"`), so visits of a
  patient are independent given its expert.

First the information criteria on the full data.
""")

code("""
moe = MEMoE.from_formula(FORMULA, df, "id", n_experts=K_BEST, re_formula="0",
                         gate_formula=MODEL["gate_formula"]).fit(n_starts=N_STARTS,
                                                                 random_state=SEED)
fits = {"LMM": comparison.results[1], "MoE": moe, "MEMoE": res}
criteria = pd.DataFrame({name: {"K": r.n_experts, "df": r.df_modelwc, "llf": r.llf,
                                "AIC": r.aic, "BIC": r.bic}
                         for name, r in fits.items()}).T
criteria[["K", "df"]] = criteria[["K", "df"]].astype(int)
criteria
""", tags=("criteria",))

md(r"""
Information criteria reward fit to the data used for estimation. Prediction of *new* patients
is a separate question, answered by **cross-validation over patients**: `cross_validate`
splits the patients into `N_FOLDS` folds, fits each model on the other folds and predicts the
held-out patients, who were never seen in fitting. The three models use the same seed, hence the
same folds, so the comparison is paired. Two predictions are scored:

* **marginal**: every visit of a held-out patient from the baseline covariates alone (the
  gating and each expert's mean, $D_k$ and $\sigma^2_k$); what can be said about a patient at
  enrolment, before any follow-up bilirubin;
* **dynamic** (`time="year"`): each visit from the same patient's *earlier* visits; the
  posterior class probabilities and random effects are updated from the history, as a
  clinician monitoring the patient would (a patient's first visit has no history and is not
  scored).

PMSE is the mean squared prediction error of log bilirubin; `coverage` is the share of
observations inside their 95% prediction set (the highest-density region of the predictive
mixture) and `mean_length` the mean total length of the marginal sets.
""")

code("""
CV_MODELS = {
    "LMM": dict(n_experts=1, re_formula="~ year"),
    "MoE": dict(n_experts=K_BEST, re_formula="0", gate_formula=MODEL["gate_formula"]),
    "MEMoE": dict(n_experts=K_BEST, **MODEL),
}
cvs = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for name, options in CV_MODELS.items():
        cvs[name] = cross_validate(FORMULA, df, "id", n_folds=N_FOLDS, random_state=SEED,
                                   time="year", n_starts=N_STARTS, **options)
print(f"{N_FOLDS}-fold cross-validation over patients; {len(caught)} warning(s) in the fits")
cv_table = pd.DataFrame({name: cv.table.loc["overall"] for name, cv in cvs.items()}).T
cv_table = cv_table[["n_obs", "pmse", "coverage", "mean_length",
                     "n_dynamic", "pmse_dynamic", "coverage_dynamic"]]
cv_table[["n_obs", "n_dynamic"]] = cv_table[["n_obs", "n_dynamic"]].astype(int)
cv_table
""", tags=("crossval",))

code("""
per_fold = pd.DataFrame({name: cv.table.loc[range(1, N_FOLDS + 1), "pmse_dynamic"]
                         for name, cv in cvs.items()})
print("dynamic PMSE by fold:")
print(per_fold.T.round(3).to_string())
for other in ("LMM", "MoE"):
    wins = int((per_fold["MEMoE"] < per_fold[other]).sum())
    print(f"MEMoE has the smaller dynamic PMSE than the {other} in {wins} of {N_FOLDS} folds")

summary = pd.concat([criteria[["AIC", "BIC"]], cv_table[["pmse", "pmse_dynamic"]]], axis=1)
print("\\nbest model by each score:")
for score in summary.columns:
    print(f"  {score:>12}: {summary[score].idxmin()}")
""")

md(r"""
**How to read the comparison.** The dynamic scores are the ones that matter for monitoring a
patient: once a few bilirubin values are known, a model with random effects predicts the next
one from the patient's own level and slope, and the MEMoE adds the patient's updated class
probabilities. The MoE has no random effects: the history can only tell it which expert the
patient belongs to, not where the patient lies within the expert, so expect its dynamic error
to be clearly larger.

The marginal scores can rank the models differently, and on these data they tell more about the
data than about the models. The figure below compares, year by year, the mean of the held-out
observations with the mean of each model's marginal predictions for them. Models with random
effects estimate how bilirubin evolves *within* patients while they remain under follow-up;
because the sickest patients leave early (Section 1), the observed values of later years come
increasingly from slowly progressing patients, and the within-patient trend overshoots their
mean. A model without random effects treats the visits of a patient as independent, so its
expert means are pulled towards the average of whoever is still observed, which scores better
on this particular target while saying less about individual patients. A joint model of
bilirubin and survival would be the principled remedy for informative dropout; it is beyond
this case study.
""")

code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, column, title in ((axes[0], "predicted", "marginal (baseline covariates only)"),
                          (axes[1], "predicted_dynamic", "dynamic (from earlier visits)")):
    for j, (name, cv) in enumerate(cvs.items()):
        p = cv.predictions.join(df["year"])
        p = p[p[column].notna()]
        means = p.groupby(p["year"].round())[[column, "observed"]].mean()
        ax.plot(means.index, means[column], marker="o", ms=3, color=f"C{j}", label=name)
    ax.plot(means.index, means["observed"], color="k", lw=2.5, label="observed")
    ax.set(xlabel="years since enrolment (rounded)", title=f"Held-out predictions: {title}")
axes[0].set_ylabel("mean log(bilirubin)")
axes[0].legend()
fig.tight_layout()
""")

# ---------------------------------------------------------------------------------------------
# 5. Figure 5

md(r"""
## 5. Prediction sets for new patients (the paper's Figure 5)

A 95% prediction set for a future visit is a set that should contain the observed log
bilirubin 95% of the time. Under the MEMoE the predictive law of one visit is a mixture of $K$
normal distributions, so the shortest 95% set, the **highest-density region** (HDR), can be a
union of intervals when the experts predict different values.

To measure coverage honestly we hold out a random third of the patients (`TEST_FRACTION`), fit
the chosen MEMoE on the others, and predict the held-out patients in a **landmark** analysis:
their visits up to `LANDMARK` years are the history, and every visit after the landmark is
predicted from that history alone (`kind="conditional"`, `time="year"`,
`landmark=LANDMARK`). The visits up to the landmark are not scored: they are in their own
history. For comparison we also draw the **marginal** sets of all visits of the held-out
patients, predicted from their baseline covariates only (`kind="marginal"`).
""")

code("""
rng = np.random.default_rng(SEED)
ids = patients.index.to_numpy()
test_ids = rng.choice(ids, size=int(round(TEST_FRACTION * ids.size)), replace=False)
train = df[~df["id"].isin(test_ids)]
test = df[df["id"].isin(test_ids)].sort_values(["id", "year"])

fit_train = MEMoE.from_formula(FORMULA, train, "id", n_experts=K_BEST, **MODEL).fit(
    n_starts=N_STARTS, random_state=SEED)

# landmark (dynamic) sets: history = visits up to LANDMARK, scored = visits after it
dyn_sets = fit_train.prediction_set(test, kind="conditional", time="year", landmark=LANDMARK)
future = test[test["year"] > LANDMARK]
dyn_sets = dyn_sets[dyn_sets["row"].isin(future.index)]
dyn_covered = coverage(fit_train, future, dyn_sets)

# marginal sets: every visit from the baseline covariates
marg_sets = fit_train.prediction_set(test, kind="marginal")
marg_covered = coverage(fit_train, test, marg_sets)

def describe_sets(sets, covered, what):
    length = (sets["upper"] - sets["lower"]).groupby(sets["row"]).sum()
    pieces = sets.groupby("row").size()
    print(f"{what}: {len(covered)} visits of {test.loc[covered.index, 'id'].nunique()} "
          f"held-out patients; empirical coverage {100 * covered.mean():.1f}% "
          f"({int(covered.sum())} covered, {int((~covered).sum())} missed); "
          f"mean set length {length.mean():.2f}; {int((pieces > 1).sum())} sets are a union "
          f"of intervals")

print(f"fitted on {train['id'].nunique()} patients, {len(test_ids)} held out; "
      f"landmark {LANDMARK:g} years\\n")
describe_sets(dyn_sets, dyn_covered, "landmark sets (visits after the landmark)")
describe_sets(marg_sets, marg_covered, "marginal sets (all visits)")
DYNAMIC_COVERAGE, MARGINAL_COVERAGE = dyn_covered.mean(), marg_covered.mean()

horizon = pd.cut(future["year"] - LANDMARK, [0, 2, 4, 6, np.inf],
                 labels=["0-2", "2-4", "4-6", "over 6"])
by_horizon = dyn_covered.groupby(horizon.loc[dyn_covered.index], observed=False).agg(
    ["size", "mean"]).rename(columns={"size": "visits", "mean": "coverage"})
print("\\nlandmark sets: coverage by years after the landmark")
print(by_horizon.T.round(3).to_string())
""", tags=("figure5-sets",))

code("""
fig, axes = plt.subplots(2, 1, figsize=(12, 8.5))
observed = test["log_bili"].rename("log(bilirubin)")
plot_prediction_sets(dyn_sets, observed.loc[future.index], ax=axes[0])
axes[0].set_title(f"Figure 5. 95% prediction sets for log bilirubin of held-out patients after "
                  f"a {LANDMARK:g}-year landmark: empirical coverage "
                  f"{100 * DYNAMIC_COVERAGE:.1f}%", fontsize="medium")
axes[0].set_xlabel("visits after the landmark (held-out patients, ordered by patient and time)")
plot_prediction_sets(marg_sets, observed, ax=axes[1])
axes[1].set_title(f"Marginal 95% prediction sets from baseline covariates: empirical coverage "
                  f"{100 * MARGINAL_COVERAGE:.1f}%", fontsize="medium")
axes[1].set_xlabel("all visits (held-out patients, ordered by patient and time)")
fig.tight_layout()
""", tags=("figure5",))

md(r"""
### One held-out patient

The same prediction for one held-out patient, the one with most visits after the landmark:
from its visits up to the landmark (dots), the conditional mean of log bilirubin over the whole
follow-up with its 95% confidence band (`get_prediction(kind="conditional")`, delta method:
the uncertainty of the estimated parameters), and the 95% prediction set of a single new visit
(the HDR of the predictive mixture, grey: where the next observation should fall). The
patient's later visits (crosses) were not used. The dashed line is the marginal mean of a new
patient with the same baseline covariates, before any bilirubin is known.
""")

code("""
after = future.groupby("id").size()
pid = after.idxmax()
visits = test[test["id"] == pid]
history = visits[visits["year"] <= LANDMARK]
times = np.linspace(0.0, visits["year"].max(), 80)
baseline = visits.iloc[0]
curve = pd.DataFrame({"id": pid, "year": times, "age": baseline["age"], "sex": baseline["sex"],
                      "trt": baseline["trt"], "bili": np.nan})
frame = pd.concat([history[curve.columns], curve], ignore_index=True)
on_curve = np.arange(len(history), len(frame))
pred = fit_train.get_prediction(frame, kind="conditional")
band = pred.summary_frame().iloc[on_curve]
sets = pred.prediction_set()
sets = sets[sets["row"].isin(on_curve)]
marginal = fit_train.get_prediction(curve, kind="marginal").summary_frame()

fig, ax = plt.subplots(figsize=(9, 5))
pieces = sets.groupby("row").size()
if (pieces == 1).all():              # one interval at every time: a band
    ax.fill_between(times, sets["lower"], sets["upper"], color="0.85", lw=0,
                    label="95% prediction set of one visit", zorder=1)
else:                                # a union of intervals somewhere: one segment per interval
    ax.vlines(times[sets["row"] - len(history)], sets["lower"], sets["upper"], color="0.8",
              lw=4, label="95% prediction set of one visit", zorder=1)
ax.fill_between(times, band["mean_ci_lower"], band["mean_ci_upper"], color="C0", alpha=0.35,
                lw=0, label="95% confidence band of the mean", zorder=2)
ax.plot(times, band["mean"], color="C0", lw=2.5, label="conditional mean (from the history)",
        zorder=3)
ax.plot(times, marginal["mean"], color="0.3", ls="--", lw=1.5,
        label="marginal mean (baseline covariates)", zorder=3)
ax.scatter(history["year"], history["log_bili"], color="k", zorder=4, label="history (used)")
later = visits[visits["year"] > LANDMARK]
ax.scatter(later["year"], later["log_bili"], color="C3", marker="x", zorder=4,
           label="later visits (not used)")
ax.axvline(LANDMARK, color="0.5", ls=":", lw=1)
ax.set(xlabel="years since enrolment", ylabel="log(bilirubin, mg/dl)",
       title=f"Held-out patient {pid}: prediction from the visits up to {LANDMARK:g} years")
ax.legend(fontsize="small", loc="upper left")
fig.tight_layout()
post = fit_train.predict_class(history)
print(f"patient {pid}: {len(history)} visits up to the landmark, {len(later)} after; posterior "
      f"expert probabilities from the history: {np.round(post.to_numpy()[0], 3).tolist()}")
""", tags=("figure-patient",))

md(r"""
**How to read Figure 5.** Each grey vertical segment is the 95% set of one visit (several
segments on one visit when the HDR is a union of intervals); dots are observations inside
their set, crosses those outside. The empirical coverage printed above and in the titles
should be close to 95%: markedly lower means the predictive law is too narrow (overconfident),
markedly higher that it is wider than needed. Misses that come in runs along one patient are a
patient whose bilirubin left its straight line after the landmark (an acceleration the model
cannot foresee); the table by horizon shows whether coverage decays with the distance from the
landmark. The marginal sets, on the other hand, tend to cover more than 95% on these data: their
width grows with time through the random slopes, while the patients still observed late are
the slow progressors (the informative dropout of Section 1). The landmark sets are much shorter than the
marginal ones, because two years of a patient's bilirubin pin down both its expert and its own
trajectory; the marginal sets must span all experts and all patients of an expert. Two caveats:
the sets plug in the estimates (parameter uncertainty is ignored, a small effect with a few
hundred patients), and the coverage of the landmark sets concerns patients still under
follow-up after the landmark.
""")

# ---------------------------------------------------------------------------------------------
# 6. Export

md(r"""
## 6. Tables for the paper

`res.to_latex()` writes the tidy parameter table (one row per parameter with its block, expert,
estimate, robust standard error, z, p and confidence interval) as a LaTeX `tabular`;
`res.summary().as_latex()` the whole summary, header included. `to_markdown()`, `to_html()`
and `to_csv(path)` give the same tidy table in other formats.
""")

code("""
latex = res.to_latex(float_format="%.3f")
print("\\n".join(latex.splitlines()[:14]))
print("...\\n")
summary_latex = res.summary(float_format="%.3f").as_latex()
print("\\n".join(summary_latex.splitlines()[:30]))
print("...")
""", tags=("export",))

md(r"""
A paper's "Table 2" has the experts as columns, each estimate with its standard error below
(`res.expert_table()`); a comparison of models has the models as columns, as statsmodels'
`summary_col` (`pymemoe.summary.summary_col`). Both print as text and export with
`to_latex()` (booktabs), `to_markdown()`, `to_html()` and `to_csv(path)`.
""")

code("""
print(res.expert_table(float_format="%.3f", stars=True))
""", tags=("expert-table",))

code("""
print(summary_col([comparison.results[1], moe, res], model_names=["LMM", "MoE", "MEMoE"],
                  float_format="%.3f"))
""", tags=("summary-col",))

# ---------------------------------------------------------------------------------------------
# Conclusion

md(r"""
## Summary

The cell below collects the key numbers of this run.
""")

code("""
print(f"chosen number of experts (BIC): K = {K_BEST}; ICL prefers K = {chosen['ICL']}, "
      f"AIC K = {chosen['AIC']}")
print(f"entropy of the chosen model: {res.entropy:.3f}")
print("cross-validated PMSE (marginal / dynamic):")
for name, row in cv_table.iterrows():
    print(f"  {name:>5}: {row['pmse']:.3f} / {row['pmse_dynamic']:.3f}")
print(f"Figure 5: coverage of the 95% landmark sets {100 * DYNAMIC_COVERAGE:.1f}%, "
      f"of the marginal sets {100 * MARGINAL_COVERAGE:.1f}%")
print(f"N_STARTS = {N_STARTS}, N_FOLDS = {N_FOLDS}; "
      f"notebook ran in {time.perf_counter() - _start:.0f} s")
""", tags=("summary-numbers",))

md(r"""
**Caveats.** The experts are defined by the model: with straight-line trajectories on the log
scale, a curved course of disease can be split into experts that differ mostly in slope.
Experts are ordered by size and expert 1 is the gating reference; labels can change between
fits with different data (cross-validation folds, the training set above), so compare experts
by their estimates, not by their numbers. Finally, all models here assume that visits are
missing at random given the patient's history and class; the informative dropout seen in
Section 1 is the main limitation of any analysis of bilirubin alone.
""")


# ---------------------------------------------------------------------------------------------

def build():
    """The notebook, with stable cell ids and no outputs."""
    return _cells.build()


def main(argv: list[str] | None = None) -> int:
    return notebook_main(build, NOTEBOOK, argv)


if __name__ == "__main__":
    sys.exit(main())
