"""Build ``notebooks/joint.ipynb``, the worked example of joint models of trajectories and
time to event on PBCseq (the user guide's page "Trajectories and time to event"), from the
cells below.

The notebook is stored executed, as ``pbcseq.ipynb`` is: ``docs/conf.py`` takes the text and
the figures of its tagged cells for the documentation. Edit the cells here, not in the .ipynb,
and regenerate and execute it with::

    python notebooks/make_joint.py --execute   # a few minutes: the parameters below
    python notebooks/make_joint.py             # the cells only, outputs cleared

``tests/test_notebooks.py`` checks that the .ipynb is the one this script writes and executes
it with small parameters (cell tagged ``parameters``).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "joint.ipynb"
sys.path.insert(0, str(HERE))
from notebook_builder import Cells, main as notebook_main  # noqa: E402

_cells = Cells("joint")
md, code = _cells.md, _cells.code


# ---------------------------------------------------------------------------------------------

md(r"""
# Trajectories and the events that end them: PBCseq

In PBCseq (312 patients with primary biliary cirrhosis, the Mayo Clinic trial) follow-up ends
by death (140 patients), by liver transplantation (29) or alive at the end of the study (143).
The patients whose bilirubin rises fastest die or receive a transplant, and stop being
measured: a model of the trajectories alone takes that dropout as uninformative. A *joint*
latent class model gives each expert its own hazards of death and transplantation as well as
its own trajectory, the two independent given the expert (lcmm's `Jointlcmm`):

$$f(y_i, T_i, d_i) = \sum_k \pi_{ik}\, f(y_i \mid k)\, \prod_c h_{kc}(T_i)^{[d_i = c]}\, S_k(T_i),$$

with cause-specific Weibull hazards $h_{kc}(t \mid x) = \rho_{kc} t^{\rho_{kc}-1}
e^{x^\top\theta_{kc}}$ (age at entry as covariate, its effect per expert and cause).

1. the choice of K, trajectory model against joint model;
2. the joint model with K = 2: summary, hazard ratios, events by expert;
3. the event curves by expert against posterior-weighted Aalen-Johansen estimates, and the
   fit of the trajectories, trajectory model beside joint model;
4. what the events change in the classification;
5. cumulative incidence for covariate profiles, dynamic predictions for two patients, and
   their accuracy in cross-validation;
6. bad input.
""")

md(r"""
## Parameters

`N_STARTS` EM starts per fit, `K_MAX` the largest number of experts compared, `N_DRAWS` the
parameter draws of the intervals of the dynamic predictions, `N_FOLDS` the folds of their
cross-validation. The test suite runs the notebook with small values.
""")

code("""
N_STARTS = 10        # EM starts per fit
K_MAX = 4            # largest number of experts compared
N_DRAWS = 500        # parameter draws of the dynamic predictions' intervals
N_FOLDS = 5          # folds of the cross-validation of the predictions
SEED = 0             # seeds the EM starts and the draws
""", tags=("parameters",))

code("""
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pymemoe import MEMoE, TimeToEvent, compare_experts
from pymemoe.datasets import load_pbcseq
from pymemoe.plotting import plot_dynamic_prediction, plot_event_curves, plot_fit

_start = time.perf_counter()
df = load_pbcseq()
df["year"] = df["day"] / 365.25            # time of each measurement since enrolment
df["years"] = df["futime"] / 365.25        # follow-up time, one value per patient
patients = df.groupby("id").first()
print(patients["status"].map({0: "alive (censored)", 1: "transplant", 2: "death"})
      .value_counts().to_string())
print(f"{len(df)} measurements of {len(patients)} patients; median follow-up "
      f"{patients['years'].median():.1f} years")
""", tags=("joint-data",))

md(r"""
## Choosing K

The same trajectory model (`np.log(bili) ~ year`, a random intercept and slope per patient)
alone and with the hazards, for K = 1 to `K_MAX`. The log-likelihoods of the two are not
comparable (the joint model's adds the events'); the comparison is within each column.
""")

code("""
survival = TimeToEvent("years", "status", formula="~ age", causes=["transplant", "death"],
                       visit_time="year")
common = dict(re_formula="~ year", n_experts=range(1, K_MAX + 1), n_starts=N_STARTS,
              random_state=SEED, fit_kwargs={"cov_type": "none"})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    trajectory_only = compare_experts("np.log(bili) ~ year", df, "id", **common)
    joint = compare_experts("np.log(bili) ~ year", df, "id", survival=survival, **common)
table = pd.concat({"trajectories": trajectory_only.table[["llf", "df", "BIC"]],
                   "joint": joint.table[["llf", "df", "BIC"]]}, axis=1)
print(table.round(1).to_string())
for k, res in joint.results.items():
    bad = [str(w).split(":")[0] for w in res.messages if "cumulative hazard" in w]
    print(f"joint K = {k}: {'degenerate hazard in ' + bad[0] if bad else 'hazards estimable'}")
""", tags=("joint-choose-k",))

md(r"""
BIC keeps falling for the joint model, but from K = 3 on, an expert holds only one or two of
the 29 transplants: its Weibull hazard of transplantation then concentrates on that single
event (the likelihood is unbounded there, a degenerate maximum that pymemoe reports as
separation). Those fits, and their BIC, are not estimates. With 29 transplants, K = 2 is
what the data support for a model with an expert-specific transplant hazard.
""")

code("""
model = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year", n_experts=2,
                           survival=survival)
res = model.fit(n_starts=N_STARTS, random_state=SEED)
print(res.summary())
""", tags=("joint-summary",))

code("""
print("hazard ratios of 1 year of age at entry, per expert and cause:")
print(res.hazard_ratios().round(3).to_string())
print()
print("events and person-years by expert (posterior-weighted):")
print(res.event_counts.round(1).to_string())
""", tags=("joint-hazards",))

md(r"""
## The events by expert, and the fit of the trajectories

Each expert's survival and cumulative incidence curves, averaged over its patients, against the
Aalen-Johansen estimates that weight each patient by its posterior probability:
""")

code("""
axes = plot_event_curves(res, time_label="years since enrolment")
""", tags=("joint-figure-events",))

md(r"""
The fit of the trajectories (`plot_fit`), the trajectory model with K = 2 beside the joint
model: each expert's observed mean per time bin, weighted by the posterior, and its predicted
mean.
""")

code("""
fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
plot_fit(trajectory_only.results[2], "year", ax=axes[0])
axes[0].set_title("trajectories only, K = 2")
plot_fit(res, "year", ax=axes[1])
axes[1].set_title("joint model, K = 2")
fig.tight_layout()
""", tags=("joint-figure-fit",))

md(r"""
## What the events change in the classification

`res.posterior` uses the trajectories and the events (lcmm's `pprob`);
`res.posterior_trajectory` the trajectories alone at the same parameters (`pprobY`).
""")

code("""
with_events = res.posterior.idxmax(axis=1).rename("with the events")
without = res.posterior_trajectory.idxmax(axis=1).rename("trajectories alone")
print(pd.crosstab(without, with_events, margins=True).to_string())
moved = (res.posterior - res.posterior_trajectory).abs().max(axis=1)
print(f"largest change of a posterior probability: {moved.max():.2f}; "
      f"{int((moved > 0.1).sum())} patients move by more than 0.1")
""", tags=("joint-posteriors",))

md(r"""
## The assumption checked

The joint latent class model assumes that, given the expert, the events do not depend on the
trajectory. The score test of Jacqmin-Gadda et al. (2010) asks whether the patient's random
effects (its own level and slope of log bilirubin) still predict each cause within the
experts (the summary prints its line):
""")

code("""
from pymemoe.diagnostics import conditional_independence_test

print(conditional_independence_test(res).to_string(float_format=lambda v: f"{v:.3g}"))
""", tags=("joint-independence",))

md(r"""
## Cumulative incidence and dynamic predictions

The marginal cumulative incidence of death at 5 and 10 years for patients aged 40 and 60 at
entry (the mixture of the experts at the gating's probabilities), with 95% intervals:
""")

code("""
rows = []
for age in (40, 60):
    curves = res.cumulative_incidence([5.0, 10.0], profile={"age": age})
    part = curves[(curves["expert"] == "marginal") & (curves["curve"] == "incidence: death")]
    rows.append(part.assign(age=age))
print(pd.concat(rows)[["age", "time", "estimate", "lower", "upper"]].round(3)
      .to_string(index=False))
""", tags=("joint-incidence",))

md(r"""
Dynamic predictions (lcmm's `dynpred`) at a landmark of 3 years for two patients event-free
then: the probability of each cause within the next 5 years given their bilirubin up to year
3, with intervals over `N_DRAWS` draws of the parameters.
""")

code("""
two = df[df["id"].isin([4, 31])]
dyn = res.dynamic_prediction(two, landmark=3.0, horizon=5.0, time="year", n_draws=N_DRAWS,
                             random_state=SEED)
print(dyn.round(3).T.to_string())
print()
print(patients.loc[[4, 31], ["years", "status"]].to_string())
""", tags=("joint-dynamic",))

code("""
fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
for row, subject in zip(axes, (4, 31)):
    plot_dynamic_prediction(res, df, subject, landmark=3.0, horizon=5.0, time="year",
                            n_draws=N_DRAWS, random_state=SEED, axes=row)
fig.tight_layout()
""", tags=("joint-figure-dynamic",))

md(r"""
How good are these predictions for patients the model has not seen? Five-fold
cross-validation over patients: each fold's joint model is fitted on the other patients, and
every held-out patient event-free at a landmark (1, 3 and 5 years) is given its probability of
death within the next 3 years from its bilirubin up to the landmark. The pooled predictions
are scored by the time-dependent AUC (does a patient who dies in the window get a higher
probability than one who does not?) and the Brier score, both with inverse-probability-of-
censoring weights (Blanche et al. 2015; checked against scikit-survival), and by lcmm's EPOCE
(minus the mean log-likelihood of each patient's observed follow-up, death, transplant or
censoring, given its bilirubin up to the landmark; lower is better). The one-expert
joint model, whose risk depends on age alone, is the reference: what the classes add. The
third model has fewer hazard parameters: a Weibull shape common to the experts
(`hazardtype="PH"`) and a common effect of age (`common_formula`); with 29 transplants, a fold
of the expert-specific model can leave an expert one transplant, and its transplant hazard
degenerate.
""")

code("""
from pymemoe.crossval import cross_validate

parsimonious = TimeToEvent("years", "status", formula="~ 1", common_formula="~ age",
                           causes=["transplant", "death"], hazardtype="PH")
models = {"K = 1": (1, survival), "K = 2": (2, survival),
          "K = 2, PH, common age": (2, parsimonious)}
scores = {}
for name, (k, spec) in models.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = cross_validate("np.log(bili) ~ year", df, "id", n_folds=N_FOLDS, random_state=SEED,
                            time="year", re_formula="~ year", n_experts=k, survival=spec,
                            landmarks=[1.0, 3.0, 5.0], horizon=3.0, n_starts=N_STARTS)
    scores[name] = cv.event_accuracy.xs("death", level="cause")[["auc", "brier"]].join(
        cv.epoce["epoce"])
print("death within 3 years of the landmark, pooled held-out predictions")
print(f"(at risk / deaths in the window: "
      + ", ".join(f"{s:g}: {int(r.n_at_risk)} / {int(r.n_cases)}"
                  for s, r in cv.event_accuracy.xs("death", level="cause").iterrows()) + ")")
print(pd.concat(scores, axis=1).round(3).to_string())
""", tags=("joint-accuracy",))

md(r"""
## Bad input

Errors name the subject (or the cause) at fault; nothing is fitted.
""")

code("""
def error(build):
    try:
        build()
    except ValueError as err:
        return str(err)
    return "no error"


def joint_with(data, **spec):
    return MEMoE.from_formula("np.log(bili) ~ year", data, "id", re_formula="~ year",
                              n_experts=2, survival=TimeToEvent(**{
                                  "time": "years", "event": "status", **spec}))


cases = {
    "a missing follow-up time": lambda: joint_with(df.assign(
        years=np.where(df["id"] == 7, np.nan, df["years"]))),
    "a time that varies within a patient": lambda: joint_with(df.assign(
        years=np.where(df.index == df.index[df["id"] == 7][0], 1.0, df["years"]))),
    "a cause without events": lambda: joint_with(df.assign(status=df["status"] * 2)),
    "event before the time origin": lambda: joint_with(df.assign(
        years=np.where(df["id"] == 7, 0.0, df["years"]))),
}
for name, build in cases.items():
    print(f"{name}:\\n  {error(build)}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    joint_with(df.assign(years=df["years"] - 1.0).query("years > 0"), visit_time="year")
print("measurements after the follow-up time:\\n  " + str(caught[-1].message))
""", tags=("joint-errors",))

code("""
print(f"N_STARTS = {N_STARTS}, K_MAX = {K_MAX}, N_DRAWS = {N_DRAWS}, N_FOLDS = {N_FOLDS}")
print(f"whole notebook: {time.perf_counter() - _start:.0f} s")
""", tags=("joint-numbers",))


# ---------------------------------------------------------------------------------------------


def build():
    """The notebook, with stable cell ids and no outputs."""
    return _cells.build()


def main(argv: list[str] | None = None) -> int:
    return notebook_main(build, NOTEBOOK, argv)


if __name__ == "__main__":
    sys.exit(main())
