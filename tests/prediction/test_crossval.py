"""Cross-validation over subjects: folds of whole subjects, PMSE and the coverage of prediction
sets of held-out subjects (marginal and dynamic), a model refitted from its formulas, and
binomial and Poisson experts scored by PMSE."""

import numpy as np
import pandas as pd
import pytest

from pymemoe import MEMoE
from pymemoe.crossval import cross_validate
from pymemoe.datasets import load_pbcseq
from pymemoe.prediction import predict

from helpers import glmm_csv
from prediction_cases import MODEL, fit, simulate


def test_cross_validation_folds_scores_and_refit():
    data = simulate(120, seed=31)
    data.index = data.index + 1000
    cv = cross_validate("y ~ time", data, "id", n_folds=3, random_state=1, time="time",
                        n_starts=2, **MODEL)
    table = cv.table
    assert table.index.tolist() == [1, 2, 3, "overall"]
    assert {"pmse", "coverage", "n_obs", "pmse_dynamic", "coverage_dynamic"} <= set(table)
    assert table.loc[[1, 2, 3], "n_obs"].sum() == table.loc["overall", "n_obs"] == len(data)
    weighted = np.average(table.loc[[1, 2, 3], "pmse"], weights=table.loc[[1, 2, 3], "n_obs"])
    assert table.loc["overall", "pmse"] == pytest.approx(weighted)
    assert 0.85 <= table.loc["overall", "coverage"] <= 1.0
    # with random effects, predicting from the earlier rows beats the marginal prediction
    assert table.loc["overall", "pmse_dynamic"] < 0.6 * table.loc["overall", "pmse"]
    # every subject is held out exactly once and never in its own training set
    everyone = set(data["id"])
    assert set(cv.folds.index) == everyone
    for f in (1, 2, 3):
        held_out = set(cv.folds.index[cv.folds == f])
        assert held_out and held_out.isdisjoint(cv.train_subjects[f])
        assert held_out | set(cv.train_subjects[f]) == everyone
    assert cv.predictions.index.sort_values().equals(data.index)
    assert (cv.predictions["fold"] == cv.folds.loc[cv.predictions["subject"]].to_numpy()).all()
    # refit fold 1 independently: the same marginal predictions and PMSE
    test_ids = cv.folds.index[cv.folds == 1]
    res = fit(data[~data["id"].isin(test_ids)], n_starts=3)
    held = data[data["id"].isin(test_ids)]
    pred = predict(res, held)
    np.testing.assert_allclose(cv.predictions.loc[held.index, "predicted"], pred, atol=1e-4)
    assert table.loc[1, "pmse"] == pytest.approx(((held["y"] - pred) ** 2).mean(), rel=1e-4)


def test_cross_validate_accepts_a_model_built_from_formulas():
    df = load_pbcseq()
    df["year"] = df["day"] / 365.25
    model = MEMoE.from_formula("np.log(bili) ~ year", df, "id", re_formula="~ year", n_experts=1)
    by_model = cross_validate(model, df, "id", n_folds=3, random_state=0)
    by_formula = cross_validate("np.log(bili) ~ year", df, "id", n_folds=3, random_state=0,
                                re_formula="~ year", n_experts=1)
    pd.testing.assert_frame_equal(by_model.table, by_formula.table)
    array_model = MEMoE(model.endog, model.exog, model.groups, exog_re=model.exog_re, n_experts=1)
    with pytest.raises(ValueError, match="from_formula"):
        cross_validate(array_model, df, "id", n_folds=3)


def _glmm_data(name: str, n_subjects: int) -> pd.DataFrame:
    df = glmm_csv(f"sim_{name}_k2")
    return df[df["subject"] < n_subjects]


@pytest.mark.parametrize("name, options", [
    ("binary", dict(family="binomial", nAGQ=5, n_experts=1)),
    ("poisson", dict(family="poisson", exposure="exposure", n_experts=1)),
])
def test_cross_validation_of_binomial_and_poisson_experts(name, options):
    """Discrete predictive laws: PMSE (the Brier score for 0/1) against an independent refit of
    a fold with the same family, quadrature and exposure; no prediction sets."""
    data = _glmm_data(name, 150)
    cv = cross_validate("y ~ time", data, "subject", n_folds=3, random_state=0, time="time",
                        **options)
    table = cv.table
    assert table[["coverage", "mean_length"]].isna().all().all()
    assert cv.predictions["covered"].isna().all()
    test_ids = cv.folds.index[cv.folds == 2]
    held = data[data["subject"].isin(test_ids)]
    res = MEMoE.from_formula("y ~ time", data[~data["subject"].isin(test_ids)], "subject",
                             **options).fit()
    pred = predict(res, held)
    np.testing.assert_allclose(cv.predictions.loc[held.index, "predicted"], pred, atol=1e-5)
    assert table.loc[2, "pmse"] == pytest.approx(((held["y"] - pred) ** 2).mean(), rel=1e-6)
    # a subject's earlier rows carry its random intercept: they improve the prediction
    assert table.loc["overall", "pmse_dynamic"] < table.loc["overall", "pmse"]
    assert cv.predictions["covered_dynamic"].isna().all()
    # a model built by from_formula carries its family, quadrature and exposure to the folds
    model = MEMoE.from_formula("y ~ time", data, "subject", **options)
    pd.testing.assert_frame_equal(cross_validate(model, data, "subject", n_folds=3,
                                                 random_state=0, time="time").table, table)


def test_cross_validation_needs_offsets_as_columns():
    data = _glmm_data("poisson", 60)
    with pytest.raises(ValueError, match="exposure as a column name"):
        cross_validate("y ~ time", data, "subject", n_folds=3, family="poisson",
                       exposure=data["exposure"].to_numpy())
    model = MEMoE.from_formula("y ~ time", data, "subject", family="poisson",
                               offset=np.log(data["exposure"].to_numpy()))
    with pytest.raises(ValueError, match="given as an array"):
        cross_validate(model, data, "subject", n_folds=3)
