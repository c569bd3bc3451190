"""The formulas of a fitted model: designs of new data rebuilt from the stored spec with the
levels and transforms learnt on the analysis sample (also after pickling), the columns each
formula reads, and names taken from the caller's namespace."""
import copy
import pickle

import numpy as np
import pandas as pd
import pytest

from pymemoe import MEMoE
from pymemoe._design.new_data import build_new_design
from pymemoe._design.questions import required_variables

from helpers import new_subjects


def test_unpickled_designs_identical_for_new_data(pbc, pbc_fit):
    spec = pbc_fit.model.spec
    back = pickle.loads(pickle.dumps(spec))
    new = new_subjects(pbc)
    new.loc[new.index[:3], "sex"] = "m"
    expected, got = build_new_design(spec, new, with_endog=False), build_new_design(back, new)
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key
    assert back.exog_gate_names == spec.exog_gate_names == ["Intercept", "C(sex)[T.m]", "center(age)"]


def test_pickle_keeps_transforms_learnt_on_the_analysis_sample(pbc):
    # Rows with missing chol are dropped, so center() and standardize() are learnt on the kept
    # rows; a categorical dtype with an unused level and a Q()-quoted column are kept as such.
    data = pbc.copy()
    baseline_stage = data.groupby("id")["stage"].transform("first")
    data["stage_c"] = pd.Categorical(baseline_stage.astype(str),
                                     categories=["1", "2", "3", "4", "9"])
    model = MEMoE.from_formula("np.log(bili) ~ year + standardize(chol)", data, "id",
                               re_formula="~ year", gate_formula="~ center(age) + C(stage_c)",
                               shared_formula="~ np.log(Q('alk.phos'))", n_experts=1)
    assert model.n_dropped == int((data["chol"].isna() | data["alk.phos"].isna()).sum()) > 0
    spec = model.spec
    back = copy.deepcopy(pickle.loads(pickle.dumps(spec)))
    assert len(back.sample) == model.data.nobs
    assert back.exog_gate_names == spec.exog_gate_names
    assert "C(stage_c)[T.9]" in spec.exog_gate_names         # the unused level is kept
    probe = data.iloc[::7].dropna(subset=["chol"])
    for key, value in build_new_design(spec, probe, with_endog=True).items():
        assert np.array_equal(value, build_new_design(back, probe, with_endog=True)[key]), key
    # the centring is the kept rows' mean age, not all rows'
    gate = build_new_design(back, probe)["exog_gate"]
    kept_mean = data.loc[data["chol"].notna() & data["alk.phos"].notna(), "age"].mean()
    np.testing.assert_allclose(gate[:, -1], probe["age"] - kept_mean, rtol=1e-12)


def test_stateful_transform_of_a_column_with_missing_values(pbc):
    """center()/standardize() of a column with missing values: the rows are dropped and counted
    and the transform is learnt on the kept rows (patsy alone would learn NaN)."""
    data = pbc.copy()
    data["alk.base"] = data.groupby("id")["alk.phos"].transform("first")
    data.loc[data["id"].isin([3, 4, 5]), "alk.base"] = np.nan                # unknown baseline
    model = MEMoE.from_formula("np.log(bili) ~ year + center(chol)", data, "id",
                               re_formula="~ year", gate_formula="~ standardize(Q('alk.base'))",
                               n_experts=1)
    missing = data["chol"].isna() | data["alk.base"].isna()
    assert data["alk.base"].isna().any()
    assert model.n_dropped == int(missing.sum())
    chol = data.loc[~missing, "chol"]
    x = model.exog[:, model.structure.exog_names.index("center(chol)")]
    np.testing.assert_allclose(x, chol - chol.mean())
    assert np.isfinite(model.exog_gate).all()
    assert np.isfinite(model.fit().llf)


def test_required_variables(pbc_fit):
    spec = pbc_fit.model.spec
    assert required_variables(spec) == {"outcome": ["bili"], "formula": ["year"],
                                        "re_formula": ["year"], "gate_formula": ["age", "sex"]}
    assert list(spec.sample.columns) == ["bili", "year", "age", "sex"]


def test_required_variables_quoted_and_shared(pbc):
    model = MEMoE.from_formula("np.log(bili) ~ year * C(trt)", pbc, "id", re_formula="0",
                               shared_formula="~ Q('alk.phos') + I(age / 10)", n_experts=1)
    variables = required_variables(model.spec)
    assert variables["formula"] == ["year", "trt"]
    assert variables["re_formula"] == []
    assert variables["shared_formula"] == ["alk.phos", "age"]


def _tenfold(x):
    return 10.0 * x


def test_pickle_with_objects_from_the_callers_namespace(pbc):
    cut = 2.0                                             # a local, pickled by value
    model = MEMoE.from_formula("np.log(bili) ~ year + I(year > cut) + _tenfold(albumin)", pbc,
                               "id", re_formula="~ 1", n_experts=1)
    assert set(model.spec.namespace) == {"np", "cut", "_tenfold"}
    back = pickle.loads(pickle.dumps(model.spec))
    probe = pbc.iloc[:40]
    assert np.array_equal(build_new_design(back, probe)["exog"],
                          build_new_design(model.spec, probe)["exog"])


def test_unpicklable_namespace_object_is_named(pbc):
    double = lambda x: 2.0 * x  # noqa: E731 - a lambda cannot be pickled
    model = MEMoE.from_formula("np.log(bili) ~ double(year)", pbc, "id", re_formula="~ 1",
                               n_experts=1)
    with pytest.raises(pickle.PicklingError, match=r"'double'.*module level"):
        pickle.dumps(model.spec)
