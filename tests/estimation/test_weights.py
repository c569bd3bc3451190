"""Subject weights: ``fit(weights=, weight_type=)`` and design-based standard errors.

References, independent of the weighted code paths:
- frequency weights: the same model fitted on the data with each subject repeated w_i times
  (pymemoe's unweighted fit, itself checked against R and statsmodels elsewhere);
- a weight of 0: the fit without those subjects;
- K = 1 without random effects: statsmodels' GLM with frequency weights on the rows
  (Gaussian and binomial);
- the survey sandwich with one unit per subject and no strata: the subject-level sandwich
  times N / (N - 1) (its definition, at a maximum where the scores sum to 0).
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from pymemoe import MEMoE

MODEL = dict(re_formula="~ year", gate_formula="~ age", n_experts=2)


@pytest.fixture(scope="module")
def model(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", **MODEL)


@pytest.fixture(scope="module")
def counts(model):
    rng = np.random.default_rng(0)
    return pd.Series(rng.integers(1, 4, model.data.n_groups).astype(float),
                     index=model.data.subjects)


def _repeat(data, counts):
    parts = [data[data["id"] == sid].assign(id=f"{sid}_{r}")
             for sid, k in counts.items() for r in range(int(k))]
    return pd.concat(parts, ignore_index=True)


def test_frequency_weights_equal_repeated_subjects(pbc, model, counts):
    weighted = model.fit(random_state=0, weights=counts, weight_type="frequency")
    repeated = MEMoE.from_formula("logbili ~ year", _repeat(pbc, counts), "id", **MODEL)
    plain = repeated.fit(random_state=0)
    np.testing.assert_allclose(weighted.llf, plain.llf, rtol=1e-10)
    np.testing.assert_allclose(weighted.params, plain.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(weighted.bse, plain.bse, rtol=1e-5)
    for name in ("bic", "aic", "icl", "entropy"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(plain, name), rtol=1e-8)
    robust_w = model.fit(random_state=0, weights=counts, weight_type="frequency",
                         cov_type="robust")
    robust_r = repeated.fit(random_state=0, cov_type="robust")
    np.testing.assert_allclose(robust_w.bse, robust_r.bse, rtol=1e-5)


def test_a_zero_weight_removes_the_subject(pbc, model):
    weights = pd.Series(1.0, index=model.data.subjects)
    gone = weights.index[::4]
    weights[gone] = 0.0
    weighted = model.fit(random_state=0, weights=weights, weight_type="frequency")
    kept = MEMoE.from_formula("logbili ~ year", pbc[~pbc["id"].isin(gone)], "id", **MODEL)
    plain = kept.fit(random_state=0)
    np.testing.assert_allclose(weighted.llf, plain.llf, rtol=1e-10)
    np.testing.assert_allclose(weighted.params, plain.params, rtol=1e-5, atol=1e-7)


def test_one_expert_without_random_effects_is_a_weighted_glm(pbc, counts):
    rows_w = pbc["id"].map(counts).to_numpy()
    X = sm.add_constant(pbc["year"].to_numpy())
    one = dict(re_formula="0", n_experts=1)
    gauss = MEMoE.from_formula("logbili ~ year", pbc, "id", **one).fit(
        weights=counts, weight_type="frequency")
    glm = sm.GLM(pbc["logbili"].to_numpy(), X, freq_weights=rows_w).fit()
    np.testing.assert_allclose(gauss.fe_params[1], glm.params, rtol=1e-8)
    resid = pbc["logbili"].to_numpy() - X @ glm.params
    np.testing.assert_allclose(gauss.scale[1], (rows_w * resid ** 2).sum() / rows_w.sum(),
                               rtol=1e-8)
    data = pbc.assign(high=(pbc["bili"] > 2).astype(float))
    binary = MEMoE.from_formula("high ~ year", data, "id", family="binomial", **one).fit(
        weights=counts, weight_type="frequency")
    glm = sm.GLM(data["high"].to_numpy(), X, family=sm.families.Binomial(),
                 freq_weights=rows_w).fit(tol=1e-12)
    np.testing.assert_allclose(binary.fe_params[1], glm.params, rtol=1e-6)
    np.testing.assert_allclose(binary.llf, glm.llf, rtol=1e-10)


def test_sampling_weights_use_the_sandwich_and_withhold_the_criteria(model, counts):
    res = model.fit(random_state=0, weights=counts)
    assert res.cov_type == "robust" and res.weight_type == "sampling"
    assert np.isnan(res.aic) and np.isnan(res.bic) and np.isnan(res.icl)
    pd.testing.assert_series_equal(res.weights, counts.rename("weight").rename_axis("subject"),
                                   check_names=False)
    text = " ".join(str(res.summary()).split())
    assert "Weights:" in text and "sampling" in text and "pseudo-likelihood" in text
    with pytest.raises(ValueError, match="cov_type='robust'"):
        model.fit(random_state=0, weights=counts, cov_type="oim")


def test_the_survey_sandwich_with_one_unit_per_subject(model, counts):
    robust = model.fit(random_state=0, weights=counts)
    n = model.data.n_groups
    units = pd.Series(np.arange(n), index=model.data.subjects)
    design = model.fit(random_state=0, weights=counts, cov_kwds={"psu": units})
    np.testing.assert_allclose(design.bse, robust.bse * np.sqrt(n / (n - 1)), rtol=1e-6)
    text = " ".join(str(design.summary()).split())
    assert "design-based sandwich over primary sampling units" in text
    # strata of whole units: the between-strata differences of the scores do not count
    strata = pd.Series(np.arange(n) % 4, index=model.data.subjects)
    layered = model.fit(random_state=0, weights=counts,
                        cov_kwds={"psu": units // 2, "strata": strata % 2})
    assert np.all(np.isfinite(layered.bse)) and not np.allclose(layered.bse, design.bse)


def test_bad_weights_and_designs_are_named(model, counts):
    bad = counts.copy()
    bad.iloc[3] = -1.0
    with pytest.raises(ValueError, match=f"subject {int(counts.index[3])} has -1.0"):
        model.fit(weights=bad)
    with pytest.raises(ValueError, match="no value for subject"):
        model.fit(weights=counts.iloc[1:])
    with pytest.raises(ValueError, match="one value per subject"):
        model.fit(weights=np.ones(5))
    with pytest.raises(ValueError, match="weight_type must be"):
        model.fit(weights=counts, weight_type="probability")
    with pytest.raises(ValueError, match="every subject has weight 0"):
        model.fit(weights=counts * 0)
    with pytest.raises(ValueError, match="takes no options"):
        model.fit(cov_type="oim", cov_kwds={"psu": counts})
    lonely = pd.Series(np.r_[0, np.ones(model.data.n_groups - 1)], index=counts.index)
    res = model.fit(random_state=0, weights=counts,
                    cov_kwds={"psu": pd.Series(np.arange(len(counts)), index=counts.index),
                              "strata": lonely})
    with warnings.catch_warnings(), pytest.raises(ValueError, match="stratum 0.0 has one"):
        warnings.simplefilter("ignore")
        res.bse


def test_weights_leave_the_model_and_unweighted_fits_alone(model, counts):
    plain = model.fit(random_state=0)
    model.fit(random_state=0, weights=counts)
    assert model.data.subject_weights is None
    again = model.fit(random_state=0)
    assert again.llf == plain.llf and again.weights is None and again.weight_type is None


def test_editing_the_weights_returned_changes_nothing(model, counts):
    res = model.fit(random_state=0, weights=counts, weight_type="frequency")
    weights = res.weights
    weights.iloc[:] = 7.0
    np.testing.assert_array_equal(res.weights, counts)
