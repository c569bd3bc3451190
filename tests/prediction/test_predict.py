"""Predictions, dynamic predictions, class membership, prediction sets and cross-validation.

References are computed here independently of pymemoe's kernels: from the labelled results
(posterior, random_effects, fe_params, gate_params, cov_re, scale) with dense numpy/scipy per
subject, and statsmodels MixedLM for one expert.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy.special import softmax

from pymemoe import MEMoE
from pymemoe.prediction import predict, predict_class, prediction_set, prior_class

from prediction_cases import design, hand_params, hand_posterior, simulate

# -- point predictions ------------------------------------------------------------------------


def test_conditional_in_sample_equals_fitted_values_by_hand(sim_fit, sim):
    res = sim_fit
    tau = res.posterior.loc[sim["id"]].to_numpy()                    # rows x experts
    re = res.random_effects
    beta = res.fe_params.to_numpy()                                  # terms x experts
    t = sim["time"].to_numpy()
    hand = np.zeros(len(sim))
    for k in (1, 2):
        b = re[k].loc[sim["id"]].to_numpy()
        mean = beta[0, k - 1] + b[:, 0] + (beta[1, k - 1] + b[:, 1]) * t
        hand += tau[:, k - 1] * mean
    np.testing.assert_allclose(predict(res, kind="conditional").to_numpy(), hand, atol=1e-10)
    np.testing.assert_allclose(predict(res, sim, kind="conditional").to_numpy(), hand,
                               atol=1e-10)


def test_marginal_and_expert_predictions_by_hand(sim_fit, sim):
    res = sim_fit
    X, _, W = design(sim)
    pi = softmax(W @ res.gate_params.to_numpy(), axis=1)
    means = X @ res.fe_params.to_numpy()
    np.testing.assert_allclose(predict(res, sim).to_numpy(), (pi * means).sum(axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(predict(res).to_numpy(), (pi * means).sum(axis=1), atol=1e-12)
    expert = predict(res, sim, kind="expert")
    assert list(expert.columns) == [1, 2]
    np.testing.assert_allclose(expert.to_numpy(), means, atol=1e-12)


def test_one_expert_conditional_equals_mixedlm_fittedvalues(pbc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_res = smf.mixedlm("logbili ~ year", pbc, groups=pbc["id"],
                             re_formula="~ year").fit(reml=False, method=["lbfgs"], tol=1e-12,
                                                      maxiter=2000)
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             n_experts=1).fit()
    expected = sm_res.fittedvalues.to_numpy()
    np.testing.assert_allclose(predict(res, kind="conditional").to_numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(predict(res, pbc, kind="conditional").to_numpy(), expected,
                               atol=1e-4)


def test_transformed_outcome_is_evaluated_with_stored_design(pbc):
    a = MEMoE.from_formula("np.log(bili) ~ year", pbc, "id", n_experts=1).fit()
    b = MEMoE.from_formula("logbili ~ year", pbc, "id", n_experts=1).fit()
    new = pbc[pbc["id"] <= 5]
    pd.testing.assert_series_equal(predict(a, new, kind="conditional"),
                                   predict(b, new, kind="conditional"), atol=1e-8)


def test_unseen_level_raises_naming_the_formula(pbc):
    res = MEMoE.from_formula("logbili ~ year + C(sex)", pbc, "id", n_experts=1).fit()
    new = pbc.head(3).assign(sex="x")
    for kind in ("marginal", "conditional"):
        with pytest.raises(ValueError, match="formula"):
            predict(res, new, kind=kind)
    predict(res, pbc.head(3))                                   # known levels are fine


def test_shuffled_newdata_gives_the_same_predictions_by_index(sim_fit, sim):
    shuffled = sim.sample(frac=1.0, random_state=3)
    for kind in ("marginal", "conditional"):
        a = predict(sim_fit, sim, kind=kind)
        b = predict(sim_fit, shuffled, kind=kind)
        assert b.index.equals(shuffled.index)
        pd.testing.assert_series_equal(b.reindex(a.index), a, atol=1e-10)
    a = predict(sim_fit, sim, kind="expert")
    pd.testing.assert_frame_equal(predict(sim_fit, shuffled, kind="expert").loc[a.index], a)
    new = sim.head(40)
    s1 = prediction_set(sim_fit, new).set_index(["row", "interval"]).sort_index()
    s2 = prediction_set(sim_fit, new.iloc[::-1]).set_index(["row", "interval"]).sort_index()
    pd.testing.assert_frame_equal(s1, s2, atol=1e-9)


def test_array_built_model_predicts_fitting_data_only(sim):
    X, Z, W = design(sim)
    res = MEMoE(sim["y"], X, sim["id"], exog_re=Z, n_experts=1).fit()
    assert predict(res, kind="conditional").shape == (len(sim),)
    with pytest.raises(ValueError, match="arrays"):
        predict(res, sim)


def test_bad_arguments(sim_fit, sim):
    with pytest.raises(ValueError, match="kind"):
        predict(sim_fit, sim, kind="population")
    with pytest.raises(ValueError, match="time"):
        predict(sim_fit, sim, kind="conditional", landmark=2.0)
    with pytest.raises(ValueError, match="outcome"):
        predict(sim_fit, sim.drop(columns="y"), kind="conditional")
    with pytest.raises(ValueError, match="alpha"):
        prediction_set(sim_fit, sim, alpha=1.5)
    varying = sim.head(10).assign(x1=np.arange(10.0))
    with pytest.raises(ValueError, match="x1"):
        predict(sim_fit, varying, kind="conditional")


# -- dynamic prediction --------------------------------------------------------------------------


def test_dynamic_prediction_uses_the_history_only(sim_fit):
    res = sim_fit
    new = simulate(25, seed=99, first_id=1000).sort_values(["id", "time"])
    new.index = pd.RangeIndex(len(new)) * 10 + 7                      # not positions
    rank = new.groupby("id").cumcount()
    n_rows = new.groupby("id")["time"].transform("size")
    future = rank >= n_rows - 2                                      # last two visits of each
    hidden = new.assign(y=new["y"].where(~future))
    pred = predict(res, hidden, kind="conditional")
    # dense reference from the history rows of each subject
    _, beta, _, _ = hand_params(res)
    X, Z, _ = design(new)
    for sid, hist in new[~future].groupby("id"):
        tau, b_hat, _ = hand_posterior(res, hist)
        rows = np.flatnonzero((new["id"] == sid).to_numpy() & future.to_numpy())
        expected = np.einsum("k,nk->n", tau, X[rows] @ beta.T + Z[rows] @ b_hat.T)
        np.testing.assert_allclose(pred.iloc[rows].to_numpy(), expected, rtol=1e-8, atol=1e-10)
    # same posterior as a data set holding only the history rows
    pd.testing.assert_frame_equal(predict_class(res, hidden), predict_class(res, new[~future]),
                                  atol=1e-12)
    history_only = predict(res, new[~future], kind="conditional")
    pd.testing.assert_series_equal(pred[~future], history_only, atol=1e-12)
    # a landmark: rows after it leave the history even when their outcome is observed
    shifted = new.assign(time=np.where(future, new["time"] + 10.0, new["time"]))
    by_landmark = predict(res, shifted, kind="conditional", landmark=5.0, time="time")
    by_missing = predict(res, shifted.assign(y=hidden["y"]), kind="conditional")
    pd.testing.assert_series_equal(by_landmark, by_missing, atol=1e-12)


def test_subject_without_outcome_gets_the_marginal_prediction(sim_fit):
    new = simulate(5, seed=5)
    blind = new.assign(y=np.nan)
    pd.testing.assert_series_equal(predict(sim_fit, blind, kind="conditional"),
                                   predict(sim_fit, new, kind="marginal"), atol=1e-12)
    pd.testing.assert_frame_equal(predict_class(sim_fit, blind), prior_class(sim_fit, new),
                                  atol=1e-14)


# -- classes -----------------------------------------------------------------------------------


def test_predict_class_on_training_data_reproduces_the_posterior(sim_fit, sim):
    pd.testing.assert_frame_equal(predict_class(sim_fit, sim), sim_fit.posterior, atol=1e-10,
                                  check_names=False)
    pd.testing.assert_frame_equal(predict_class(sim_fit), sim_fit.posterior, atol=1e-12,
                                  check_names=False)
    pd.testing.assert_frame_equal(prior_class(sim_fit, sim), sim_fit.prior, atol=1e-12,
                                  check_names=False)


def test_predict_class_of_new_subjects_by_hand(sim_fit):
    new = simulate(8, seed=21, first_id=500)
    got = predict_class(sim_fit, new)
    for sid, rows in new.groupby("id"):
        tau, _, _ = hand_posterior(sim_fit, rows)
        np.testing.assert_allclose(got.loc[sid].to_numpy(), tau, atol=1e-10)


# -- new data that the formulas cannot evaluate ------------------------------------------------


def test_gating_varying_within_a_new_subject_is_rejected_by_every_kind(pbc):
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             gate_formula="~ age", n_experts=2).fit(n_starts=1, random_state=0)
    new = pbc[pbc["id"].isin([1, 2])].copy()
    new.loc[new.index[1], "age"] += 1.0               # subject 1's age changes between visits
    message = r"gate_formula '~ age': column 'age' varies within subject 1"
    calls = [lambda: res.predict(new), lambda: res.predict(new, kind="expert"),
             lambda: res.predict(new, kind="conditional"),
             lambda: res.get_prediction(new), lambda: res.get_prediction(new, kind="expert"),
             lambda: res.prediction_set(new, kind="marginal"), lambda: res.prediction_set(new),
             lambda: res.predict_class(new), lambda: res.prior_class(new)]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()


def test_spline_outside_its_knots_explains_the_bounds(pbc):
    res = MEMoE.from_formula("logbili ~ bs(year, df=3)", pbc, "id", n_experts=1).fit()
    new = pd.DataFrame({"year": [5.0, 20.0]})
    with pytest.raises(ValueError, match=r"(?s)bs\(year, df=3\).*from 0 to 14.*20.*"
                                         r"lower_bound=.*upper_bound=20"):
        res.predict(new)
    wide = MEMoE.from_formula("logbili ~ bs(year, df=3, lower_bound=0, upper_bound=25)", pbc,
                              "id", n_experts=1).fit()
    assert np.isfinite(wide.predict(new)).all()


def test_a_formula_that_new_data_cannot_evaluate_is_named_by_its_keyword(pbc):
    """The error names the keyword the user wrote (``gate_formula``, ``re_formula``), not an
    internal name."""
    res = MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                             gate_formula="~ age", n_experts=2).fit(n_starts=1, random_state=0)
    with pytest.raises(ValueError, match=r"^gate_formula '~ age' cannot be evaluated on the new"):
        res.predict(pbc.head(3).drop(columns="age"))
    with pytest.raises(ValueError, match=r"^formula 'logbili ~ year' cannot be evaluated"):
        res.predict(pbc.head(3).drop(columns="year"), kind="expert")
