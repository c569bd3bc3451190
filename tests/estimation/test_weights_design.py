"""Design-based standard errors against a bootstrap of the sampling units (about 10 s).

A stratified two-stage sample drawn here with numpy: 4 strata of 15 primary sampling units
(PSUs) of 10 subjects, a PSU effect on the outcome (the clustering the design-based sandwich
must see), sampling weights that differ by stratum, two experts. The reference is the
with-replacement bootstrap of the PSUs within each stratum: each replicate multiplies the
subjects' weights by the number of times their PSU was drawn and refits from the estimates;
its variance times n_h / (n_h - 1) (the same factor as the sandwich) estimates the design
variance independently of the sandwich's algebra.
"""
import warnings

import numpy as np
import pandas as pd

from pymemoe import MEMoE

STRATA, UNITS, SUBJECTS, VISITS = 4, 15, 10, 5
B = 100


def survey(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = STRATA * UNITS * SUBJECTS
    stratum = np.repeat(np.arange(STRATA), UNITS * SUBJECTS)
    unit = np.repeat(np.arange(STRATA * UNITS), SUBJECTS)
    expert = (rng.random(n) < 0.35 + 0.1 * (stratum % 2)).astype(int)
    level = (np.where(expert == 1, 3.0, 0.0) + rng.normal(0, 0.6, STRATA * UNITS)[unit]
             + rng.normal(0, 0.7, n))
    slope = np.where(expert == 1, -0.5, 0.4)
    t = np.tile(np.arange(VISITS, dtype=float), n)
    y = (np.repeat(level, VISITS) + np.repeat(slope, VISITS) * t
         + rng.normal(0, 1.0, n * VISITS))
    return pd.DataFrame({"id": np.repeat(np.arange(n), VISITS), "t": t, "y": y,
                         "stratum": np.repeat(stratum, VISITS), "psu": np.repeat(unit, VISITS),
                         "w": np.repeat(1.0 + stratum, VISITS)})


def test_design_standard_errors_match_a_bootstrap_of_the_units():
    df = survey(11)
    first = df.groupby("id").first()
    model = MEMoE.from_formula("y ~ t", df, "id", re_formula="~ 1", n_experts=2)
    design = {"psu": first["psu"], "strata": first["stratum"]}
    res = model.fit(random_state=0, weights=first["w"], cov_kwds=design)
    rng = np.random.default_rng(5)
    draws = []
    for _ in range(B):
        multiplier = np.zeros(STRATA * UNITS)
        for h in range(STRATA):
            units = h * UNITS + rng.integers(0, UNITS, UNITS)
            np.add.at(multiplier, units, 1.0)
        weights = first["w"] * multiplier[first["psu"].to_numpy()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            boot = model.fit(weights=weights, start_params=res.params, cov_type="none")
        draws.append(boot.params.to_numpy())
    boot_se = np.std(np.array(draws), axis=0, ddof=1) * np.sqrt(UNITS / (UNITS - 1))
    ratio = pd.Series(res.bse.to_numpy() / boot_se, index=res.params.index)
    print("\ndesign SE / bootstrap SE\n", ratio.round(3).to_string())
    main = ratio.loc[["gate", "beta"]]
    assert main.between(0.8, 1.25).all(), main
    # the clustering matters: the subject-level sandwich is clearly smaller for the levels
    naive = model.fit(random_state=0, weights=first["w"]).bse
    assert (naive.loc["beta"].iloc[[0, 2]] < 0.8 * res.bse.loc["beta"].iloc[[0, 2]]).all()
