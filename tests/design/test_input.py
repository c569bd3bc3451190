"""Input checks of MEMoE.from_formula and the MEMoE array constructor.

What the project promises about its input: rows with a missing or non-finite value in a used
variable are dropped and counted (or raise with ``missing="raise"``); gating covariates must be
constant within a subject; unknown columns, bad options, empty data and collinear fixed effects
raise a ValueError that names the culprit; the user's DataFrame is never modified; subject ids
of any hashable type and rows in any order give the same fit.

All fits are small (K = 1, or K = 2 with two starts) so that the file runs in a few seconds.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from statsmodels.tools.sm_exceptions import HessianInversionWarning

from pymemoe import MEMoE
from pymemoe.datasets import load_pbcseq

from helpers import FORMULA, assert_valid, fit_recording, messages_of

RE_FORMULA = "~ year"
N_ROWS = 1945
N_SUBJECTS = 312
RTOL = 1e-8


# -- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def _pbc() -> pd.DataFrame:
    df = load_pbcseq()
    df["year"] = df["day"] / 365.25
    df["logbili"] = np.log(df["bili"])
    return df


@pytest.fixture
def pbc(_pbc) -> pd.DataFrame:
    """A fresh copy of PBCseq with ``year`` and ``logbili`` added (tests may modify it)."""
    return _pbc.copy(deep=True)


def _model(data, n_experts=1, groups="id", **kwargs):
    kwargs.setdefault("re_formula", RE_FORMULA)
    formula = kwargs.pop("formula", FORMULA)
    return MEMoE.from_formula(formula, data, groups, n_experts=n_experts, **kwargs)


def _fit(model):
    if model.n_experts == 1:
        return model.fit()
    return model.fit(n_starts=2, random_state=0)


def _relative_gap(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1.0)


@pytest.fixture(scope="module")
def reference_fits(_pbc):
    """The K = 1 and K = 2 fits on PBCseq as shipped (integer ids, rows sorted by id)."""
    return {k: _fit(_model(_pbc.copy(), n_experts=k)) for k in (1, 2)}


# -- missing and non-finite values -------------------------------------------------------------

def test_rows_with_missing_chol_are_dropped_and_counted(pbc):
    expected = int(pbc["chol"].isna().sum())
    assert expected == 821  # the data set as documented; guards the count below
    model = _model(pbc, formula="np.log(bili) ~ year + chol")
    res = model.fit()
    assert model.n_dropped == expected
    assert res.n_dropped == expected
    assert res.nobs == N_ROWS - expected
    # exactly the rows where chol is missing were dropped, no others
    kept = pbc.index[pbc["chol"].notna()]
    pdt.assert_index_equal(pd.Index(model.row_index), kept)
    assert res.n_groups == pbc.loc[kept, "id"].nunique()


def test_missing_values_counted_jointly_over_all_formulas(pbc):
    # chol (821 NaN) in the shared fixed effects and platelet (73 NaN) in the random effects:
    # a row is dropped once even if both are missing.
    expected = int((pbc["chol"].isna() | pbc["platelet"].isna()).sum())
    assert expected < 821 + 73  # some rows miss both, so a double count would be caught
    model = _model(pbc, re_formula="~ 1 + platelet", shared_formula="~ chol")
    assert model.n_dropped == expected
    assert model.data.nobs == N_ROWS - expected


def test_missing_values_in_unused_columns_are_not_dropped(pbc):
    assert pbc["chol"].isna().any()
    model = _model(pbc)
    res = model.fit()
    assert model.n_dropped == 0
    assert res.n_dropped == 0
    assert res.nobs == N_ROWS
    assert res.n_groups == N_SUBJECTS


def test_missing_subject_id_is_dropped_and_counted(pbc):
    pbc["id"] = pbc["id"].astype(float)
    pbc.loc[[0, 5, 9], "id"] = np.nan
    model = _model(pbc)
    assert model.n_dropped == 3
    assert model.data.nobs == N_ROWS - 3


def test_missing_values_dropped_with_non_unique_index(pbc):
    # A DataFrame indexed by subject (a common layout) has a non-unique index; dropping must
    # still be row by row, not label by label.
    expected = int(pbc["chol"].isna().sum())
    indexed = pbc.set_index("id", drop=False)
    model = _model(indexed, formula="np.log(bili) ~ year + chol")
    assert model.n_dropped == expected
    assert model.data.nobs == N_ROWS - expected


def test_missing_raise_raises_naming_the_column(pbc):
    with pytest.raises(ValueError, match="chol"):
        _model(pbc, formula="np.log(bili) ~ year + chol", missing="raise")


def test_missing_raise_is_fine_without_missing_values(pbc):
    model = _model(pbc, missing="raise")
    assert model.n_dropped == 0
    assert model.data.nobs == N_ROWS


def test_infinite_values_are_dropped_and_counted(pbc):
    rng = np.random.default_rng(0)
    pbc["x"] = rng.normal(size=len(pbc))
    pbc.loc[[3, 10, 20], "x"] = np.inf
    pbc.loc[[50], "x"] = -np.inf
    expected = int((~np.isfinite(pbc["x"])).sum())
    assert expected == 4
    model = _model(pbc, formula="np.log(bili) ~ year + x")
    res = model.fit()
    assert model.n_dropped == expected
    assert res.n_dropped == expected
    assert res.nobs == N_ROWS - expected
    pdt.assert_index_equal(pd.Index(model.row_index), pbc.index[np.isfinite(pbc["x"])])


def test_infinite_values_and_nan_counted_together(pbc):
    pbc["x"] = np.random.default_rng(1).normal(size=len(pbc))
    pbc.loc[pbc.index[:5], "x"] = np.inf
    expected = int((pbc["chol"].isna() | ~np.isfinite(pbc["x"])).sum())
    model = _model(pbc, formula="np.log(bili) ~ year + x + chol")
    assert model.n_dropped == expected


def test_infinite_values_with_missing_raise(pbc):
    pbc["x"] = np.random.default_rng(0).normal(size=len(pbc))
    pbc.loc[[3], "x"] = np.inf
    with pytest.raises(ValueError, match="missing='raise'|non-finite"):
        _model(pbc, formula="np.log(bili) ~ year + x", missing="raise")


def test_array_constructor_drops_and_counts_missing(pbc):
    expected = int(pbc["chol"].isna().sum())
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"], "chol": pbc["chol"]})
    model = MEMoE(np.log(pbc["bili"]), exog, pbc["id"], n_experts=1)
    assert model.n_dropped == expected
    assert model.data.nobs == N_ROWS - expected
    with pytest.raises(ValueError, match="missing"):
        MEMoE(np.log(pbc["bili"]), exog, pbc["id"], n_experts=1, missing="raise")


def test_all_rows_missing_raises(pbc):
    pbc["x"] = np.nan
    with pytest.raises(ValueError, match="no rows left"):
        _model(pbc, formula="np.log(bili) ~ year + x")


# -- gating covariates constant within subject -------------------------------------------------

def _subject_in_message(message: str) -> str:
    found = re.search(r"subject (\S+?)[;,:]?(\s|$)", message)
    assert found, f"no subject named in {message!r}"
    return found.group(1)


@pytest.mark.parametrize("shuffle", [False, True], ids=["sorted", "shuffled"])
def test_gate_varying_within_subject_names_column_and_subject(pbc, shuffle):
    data = pbc.sample(frac=1, random_state=1) if shuffle else pbc
    varying = {str(i) for i, n in data.groupby("id")["day"].nunique().items() if n > 1}
    with pytest.raises(ValueError, match=r"gate_formula.*'day'") as info:
        _model(data, gate_formula="~ day")
    label = _subject_in_message(str(info.value))
    digits = re.findall(r"\d+", label)
    assert digits and digits[-1] in varying, f"subject {label!r} is not one whose day varies"


def test_gate_varying_within_subject_string_ids(pbc):
    pbc["id"] = "p" + pbc["id"].astype(str)
    varying = {i for i, n in pbc.groupby("id")["day"].nunique().items() if n > 1}
    with pytest.raises(ValueError, match="'day'") as info:
        _model(pbc, gate_formula="~ age + day")
    assert _subject_in_message(str(info.value)).strip("'\"") in varying


def test_gate_error_shows_subject_id_as_in_the_data(pbc):
    # The subject should read as the user wrote it ("1"), not as a numpy repr ("np.int64(1)").
    varying = {str(i) for i, n in pbc.groupby("id")["day"].nunique().items() if n > 1}
    with pytest.raises(ValueError, match="'day'") as info:
        _model(pbc, gate_formula="~ day")
    label = _subject_in_message(str(info.value)).strip("'\"")
    assert label in varying, f"subject shown as {label!r} in: {info.value}"


def test_gate_constant_within_subject_is_accepted(pbc):
    model = _model(pbc, n_experts=2, gate_formula="~ age + C(sex) + trt")
    assert model.structure.exog_gate_names == ("Intercept", "C(sex)[T.m]", "age", "trt")


def test_array_constructor_gate_varying_within_subject(pbc):
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"]})
    gate = pd.DataFrame({"Intercept": 1.0, "day": pbc["day"]})
    with pytest.raises(ValueError, match="'day'"):
        MEMoE(np.log(pbc["bili"]), exog, pbc["id"], exog_gate=gate, n_experts=2)


# -- unknown columns, bad options, empty data, collinearity ------------------------------------

@pytest.mark.parametrize("kwargs, pattern", [
    (dict(formula="np.log(bili) ~ yeer"), r"formula 'np\.log\(bili\) ~ yeer'.*yeer"),
    (dict(formula="np.log(bilirubin) ~ year"), r"formula 'np\.log\(bilirubin\) ~ year'"),
    (dict(re_formula="~ yeer"), r"re_formula '~ yeer'"),
    (dict(gate_formula="~ agee"), r"gate_formula '~ agee'"),
    (dict(shared_formula="~ cholesterol"), r"shared_formula '~ cholesterol'"),
], ids=["formula-rhs", "formula-lhs", "re_formula", "gate_formula", "shared_formula"])
def test_unknown_column_names_the_formula(pbc, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        _model(pbc, **kwargs)


def test_misspelt_groups_column_is_named(pbc):
    with pytest.raises(ValueError, match=r"groups='idd'"):
        _model(pbc, groups="idd")


def test_groups_array_of_wrong_length(pbc):
    with pytest.raises(ValueError, match="groups"):
        _model(pbc, groups=pbc["id"].to_numpy()[:-1])


@pytest.mark.parametrize("n_experts", [0, -1])
def test_n_experts_below_one(pbc, n_experts):
    with pytest.raises(ValueError, match="n_experts"):
        _model(pbc, n_experts=n_experts)


def test_n_experts_more_than_subjects(pbc):
    with pytest.raises(ValueError, match=rf"n_experts={N_SUBJECTS + 1}.*{N_SUBJECTS}"):
        _model(pbc, n_experts=N_SUBJECTS + 1)


def test_n_experts_more_than_subjects_after_dropping(pbc):
    # only subjects with a cholesterol measurement remain
    n_left = pbc.loc[pbc["chol"].notna(), "id"].nunique()
    with pytest.raises(ValueError, match="n_experts"):
        _model(pbc, formula="np.log(bili) ~ year + chol", n_experts=n_left + 1)


def test_n_experts_equal_to_subjects_is_accepted(pbc):
    small = pbc[pbc["id"].isin(pbc["id"].unique()[:3])]
    model = _model(small, n_experts=3, re_formula="0")
    assert model.n_experts == 3


@pytest.mark.parametrize("option, value", [
    ("cov_re", "experts"),
    ("scale", "common"),
    ("re_structure", "diag"),
    ("missing", "ignore"),
])
def test_unknown_option_value(pbc, option, value):
    with pytest.raises(ValueError, match=rf"{option}.*'{value}'"):
        _model(pbc, **{option: value})


@pytest.mark.parametrize("option, value", [
    ("cov_re", "bad"), ("scale", "bad"), ("re_structure", "bad"), ("missing", "bad"),
])
def test_unknown_option_value_array_constructor(pbc, option, value):
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"]})
    with pytest.raises(ValueError, match=rf"{option}.*'{value}'"):
        MEMoE(np.log(pbc["bili"]), exog, pbc["id"], n_experts=1, **{option: value})


def test_empty_dataframe(pbc):
    with pytest.raises(ValueError, match="no rows"):
        _model(pbc.iloc[:0])


def test_empty_arrays():
    with pytest.raises(ValueError, match="no observations"):
        MEMoE(np.empty(0), np.empty((0, 1)), np.empty(0), n_experts=1)


@pytest.mark.parametrize("kwargs, columns", [
    (dict(formula="np.log(bili) ~ year + year2"), ["year", "year2"]),
    (dict(formula="np.log(bili) ~ year + one"), ["Intercept", "one"]),
    (dict(formula="np.log(bili) ~ year", shared_formula="~ year2"), ["year", "year2"]),
], ids=["column-and-2x", "constant-column", "across-shared"])
def test_collinear_fixed_effects_name_the_columns(pbc, kwargs, columns):
    pbc["year2"] = 2.0 * pbc["year"]
    pbc["one"] = 1.0
    with pytest.raises(ValueError, match="collinear") as info:
        _model(pbc, **kwargs)
    message = str(info.value)
    for column in columns:
        assert f"'{column}'" in message, message
    assert "'age'" not in message


def test_collinear_fixed_effects_array_constructor(pbc):
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"], "year2": 2.0 * pbc["year"]})
    with pytest.raises(ValueError, match=r"'year', 'year2'"):
        MEMoE(np.log(pbc["bili"]), exog, pbc["id"], n_experts=1)


# -- the user's data is never modified ---------------------------------------------------------

@pytest.mark.parametrize("case", ["plain", "missing", "string-ids", "categorical-ids", "inf"])
def test_dataframe_not_modified(pbc, case):
    kwargs = dict(gate_formula="~ age + C(sex)", shared_formula="~ trt")
    if case == "missing":
        kwargs["formula"] = "np.log(bili) ~ year + chol"
    elif case == "string-ids":
        pbc["id"] = "p" + pbc["id"].astype(str)
    elif case == "categorical-ids":
        pbc["id"] = pd.Categorical(pbc["id"])
    elif case == "inf":
        pbc["x"] = np.random.default_rng(0).normal(size=len(pbc))
        pbc.loc[[1, 2], "x"] = np.inf
        kwargs["formula"] = "np.log(bili) ~ year + x"
    data = pbc.sample(frac=1, random_state=2)  # a non-trivial index, too
    before = copy.deepcopy(data)
    model = _model(data, n_experts=2, **kwargs)
    res = _fit(model)
    assert np.isfinite(res.llf)
    pdt.assert_frame_equal(data, before, check_exact=True)
    pdt.assert_index_equal(data.columns, before.columns)


def test_array_inputs_not_modified(pbc):
    endog = np.log(pbc["bili"])
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"], "chol": pbc["chol"]})
    groups = pbc["id"]
    before = (endog.copy(deep=True), exog.copy(deep=True), groups.copy(deep=True))
    MEMoE(endog, exog, groups, n_experts=1).fit()
    pdt.assert_series_equal(endog, before[0], check_exact=True)
    pdt.assert_frame_equal(exog, before[1], check_exact=True)
    pdt.assert_series_equal(groups, before[2], check_exact=True)


# -- subject ids of any hashable type, rows in any order ----------------------------------------

def _string_ids(df):
    out = df.copy()
    out["id"] = "p" + out["id"].astype(str)
    return out, lambda i: f"p{i}"


def _shuffled(df):
    return df.sample(frac=1, random_state=1), lambda i: i


def _categorical_ids(df):
    out = df.copy()
    out["id"] = pd.Categorical(out["id"])
    return out, lambda i: i


def _shuffled_string_ids(df):
    out, key = _string_ids(df)
    return out.sample(frac=1, random_state=1), key


def _tuple_ids(df):
    out = df.copy()
    out["id"] = pd.Series([("s", i) for i in out["id"]], index=out.index, dtype=object)
    return out, lambda i: ("s", i)


def _mixed_type_ids(df):
    out = df.copy()
    out["id"] = pd.Series([i if i % 2 else f"s{i}" for i in out["id"]], index=out.index,
                          dtype=object)
    return out, lambda i: i if i % 2 else f"s{i}"


VARIANTS = {
    "string": _string_ids,
    "shuffled": _shuffled,
    "categorical": _categorical_ids,
    "shuffled-string": _shuffled_string_ids,
    "tuple": _tuple_ids,
    "mixed-types": _mixed_type_ids,
}


@pytest.mark.parametrize("n_experts", [1, 2])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fit_invariant_to_ids_and_row_order(_pbc, reference_fits, variant, n_experts):
    ref = reference_fits[n_experts]
    data, key = VARIANTS[variant](_pbc.copy())
    res = _fit(_model(data, n_experts=n_experts))
    assert res.nobs == ref.nobs
    assert res.n_groups == ref.n_groups == N_SUBJECTS
    assert _relative_gap(res.llf, ref.llf) < RTOL, (res.llf, ref.llf)
    # same posterior subject by subject
    expected = ref.posterior.copy()
    expected.index = pd.Index([key(i) for i in expected.index])
    assert set(res.posterior.index) == set(expected.index)
    got = res.posterior.loc[list(expected.index)]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.params.to_numpy(), ref.params.to_numpy(), rtol=1e-5, atol=1e-7)


def test_groups_given_as_array_equals_groups_column(_pbc, reference_fits):
    shuffled = _pbc.sample(frac=1, random_state=3)
    labels = ("p" + shuffled["id"].astype(str)).to_numpy()
    res = _fit(_model(shuffled.drop(columns="id"), groups=labels))
    ref = reference_fits[1]
    assert _relative_gap(res.llf, ref.llf) < RTOL
    assert sorted(res.posterior.index) == sorted(f"p{i}" for i in ref.posterior.index)


# -- array constructor against the formula interface -------------------------------------------

def test_array_constructor_matches_formula(_pbc, reference_fits):
    df = _pbc.copy()
    ref = reference_fits[1]
    exog = pd.DataFrame({"Intercept": 1.0, "year": df["year"]})[["Intercept", "year"]]
    endog = np.log(df["bili"])
    model = MEMoE(endog, exog, df["id"], exog_re=exog, n_experts=1)
    res = _fit(model)
    assert _relative_gap(res.llf, ref.llf) < RTOL, (res.llf, ref.llf)
    pdt.assert_index_equal(res.params.index, ref.params.index)
    np.testing.assert_allclose(res.params.to_numpy(), ref.params.to_numpy(), rtol=1e-6, atol=1e-9)
    assert res.nobs == ref.nobs and res.n_groups == ref.n_groups


def test_array_constructor_matches_formula_with_gate_and_two_experts(_pbc, reference_fits):
    df = _pbc.copy()
    ref = reference_fits[2]
    exog = pd.DataFrame({"Intercept": 1.0, "year": df["year"]})
    model = MEMoE(np.log(df["bili"]).to_numpy(), exog, df["id"].to_numpy(), exog_re=exog,
                  exog_gate=pd.DataFrame({"Intercept": np.ones(len(df))}), n_experts=2)
    res = _fit(model)
    assert _relative_gap(res.llf, ref.llf) < RTOL, (res.llf, ref.llf)
    pdt.assert_index_equal(res.params.index, ref.params.index)


@pytest.mark.parametrize("kind", ["str", "category", "bool", "object-numbers"])
def test_non_numeric_outcome_names_formula_and_column(pbc, kind):
    data = pbc.copy()
    if kind == "str":
        data["yy"] = data["bili"].astype(str)
    elif kind == "category":
        data["yy"] = pd.Categorical(data["stage"])
    elif kind == "bool":
        data["yy"] = data["bili"] > 1
    else:  # numbers read as text, with a non-number among them
        data["yy"] = pd.Series(list(data["bili"].astype(object)), dtype=object)
        data.loc[3, "yy"] = "n/a"
    with pytest.raises(ValueError, match=r"formula 'yy ~ year'.*'yy' is not numeric.*to_numeric") as info:
        MEMoE.from_formula("yy ~ year", data, "id", n_experts=1)
    assert len(str(info.value)) < 600, "the message should not list every level"


def test_constant_outcome_raises(pbc):
    data = pbc.assign(c=3.0)
    with pytest.raises(ValueError, match=r"formula 'c ~ year'.*'c' is constant"):
        MEMoE.from_formula("c ~ year", data, "id", re_formula="~ year", n_experts=2)


def test_outcome_reproduced_exactly_by_fixed_effects_raises(pbc):
    data = pbc.assign(line=2.0 + 3.0 * pbc["year"])
    with pytest.raises(ValueError, match=r"formula 'line ~ year'.*'line'.*reproduce the outcome exactly"):
        MEMoE.from_formula("line ~ year", data, "id", re_formula="0", n_experts=1)


def test_constant_outcome_array_constructor(pbc):
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"]})
    try:
        model = MEMoE(np.full(len(pbc), 3.0), exog, pbc["id"], n_experts=1)
    except np.linalg.LinAlgError:
        raise
    except ValueError as err:
        assert "constant" in str(err)
        return
    assert_valid(*fit_recording(model))


@pytest.mark.parametrize("where", ["gate", "fixed"])
def test_categorical_level_in_one_subject(pbc, where):
    """Works. The level's coefficient is confounded with that subject's random effects (fixed
    effects) or nearly separates it (gating): its SE may be NaN with a HessianInversionWarning,
    and a fit that stops short of the gradient tolerance says so."""
    data = pbc.copy()
    data["grp"] = np.where(data["id"] == 5, "rare", np.where(data["id"] % 2 == 0, "a", "b"))
    if where == "gate":
        model = MEMoE.from_formula(FORMULA, data, "id", re_formula="~ year",
                                   gate_formula="~ C(grp)", n_experts=2)
        res, caught = fit_recording(model, n_starts=2, random_state=0)
        label = ("gate", 2, "C(grp)[T.rare]")
    else:
        model = MEMoE.from_formula(FORMULA + " + C(grp)", data, "id", re_formula="~ year",
                                   n_experts=1)
        res, caught = fit_recording(model)
        label = ("beta", 1, "C(grp)[T.rare]")
    assert_valid(res, caught)
    assert label in res.params.index
    assert res.n_groups == data["id"].nunique()


def test_all_subjects_with_one_observation(pbc):
    data = pbc.groupby("id").head(1)
    # random intercept and residual variance are not separately identified from one visit
    # each: a clear error with the remedy, not a fit whose standard errors are missing
    with pytest.raises(ValueError, match="single observation.*re_formula=\"0\""):
        MEMoE.from_formula("np.log(bili) ~ age", data, "id", re_formula="~ 1", n_experts=1)
    model = MEMoE.from_formula("np.log(bili) ~ age", data, "id", re_formula="0", n_experts=1)
    res, caught = fit_recording(model)
    assert_valid(res, caught)
    assert res.nobs == res.n_groups == data["id"].nunique()


def test_some_subjects_with_one_observation(pbc):
    singles = pbc[pbc["id"] <= 40].groupby("id").head(1)
    data = pd.concat([pbc[pbc["id"] > 40], singles])
    model = MEMoE.from_formula(FORMULA, data, "id", re_formula="~ year", n_experts=2)
    res, caught = fit_recording(model, n_starts=2, random_state=0)
    assert_valid(res, caught)
    assert res.n_groups == data["id"].nunique()
    assert (model.data.n_obs == 1).sum() >= 40


def test_subject_with_all_outcomes_missing_is_dropped(pbc):
    data = pbc.copy()
    n_rows = int((data["id"] == 7).sum())
    data.loc[data["id"] == 7, "bili"] = np.nan
    model = MEMoE.from_formula(FORMULA, data, "id", re_formula="~ year", n_experts=1)
    res, caught = fit_recording(model)
    assert_valid(res, caught)
    assert res.n_dropped == n_rows == 7
    assert res.n_groups == pbc["id"].nunique() - 1
    assert 7 not in res.posterior.index


def test_more_random_effects_than_visits_one_expert(pbc):
    """K = 1 with a quadratic random effect and two visits per subject: fits; the directions
    the data cannot identify get NaN standard errors with a HessianInversionWarning."""
    data = pbc.groupby("id").head(2)
    model = MEMoE.from_formula(FORMULA, data, "id", re_formula="~ year + I(year**2)", n_experts=1)
    res, caught = fit_recording(model)
    assert_valid(res, caught)
    assert messages_of(caught, HessianInversionWarning)
    assert res.bse.isna().any()


def test_more_random_effects_than_visits_two_experts(pbc):
    data = pbc.groupby("id").head(2)
    model = MEMoE.from_formula(FORMULA, data, "id", re_formula="~ year + I(year**2)", n_experts=2)
    try:
        res, caught = fit_recording(model, n_starts=2, random_state=0, maxiter=100)
    except np.linalg.LinAlgError:
        raise
    except ValueError as err:           # a clear error is acceptable too
        assert "re_formula" in str(err)
        return
    assert_valid(res, caught)


def test_one_observation_per_subject_with_random_effects_advises_re_formula_0(pbc):
    last = pbc.groupby("id").tail(1)
    with pytest.raises(ValueError, match=r"single observation.*re_formula=\"0\""):
        MEMoE.from_formula("logbili ~ year", last, "id", re_formula="~ 1", n_experts=1)
    with pytest.raises(ValueError, match="single observation.*exog_re"):
        MEMoE(last["logbili"], np.column_stack([np.ones(len(last)), last["year"]]), last["id"],
              n_experts=1)
    res = MEMoE.from_formula("logbili ~ year", last, "id", re_formula="0", n_experts=1).fit()
    assert np.isfinite(res.bse).all()


def test_nullable_pandas_dtypes_give_the_same_fit(pbc):
    kwargs = dict(re_formula="~ year", gate_formula="~ C(sex) + C(trt) + age", n_experts=2)
    plain = MEMoE.from_formula("logbili ~ year + C(stage)", pbc, "id", **kwargs).fit(
        n_starts=1, random_state=0)
    nullable = pbc.astype({"trt": "Int64", "sex": "string", "stage": "Int64", "age": "Float64",
                           "id": "Int64", "logbili": "Float64"})
    before = nullable.copy()
    res = MEMoE.from_formula("logbili ~ year + C(stage)", nullable, "id", **kwargs).fit(
        n_starts=1, random_state=0)
    pd.testing.assert_frame_equal(nullable, before)                  # the data are untouched
    assert res.llf == pytest.approx(plain.llf, abs=1e-8)
    pd.testing.assert_index_equal(res.params.index, plain.params.index)
    np.testing.assert_allclose(res.params, plain.params, rtol=1e-7, atol=1e-9)
    # missing values in nullable columns are dropped and counted, new data may be nullable too
    holes = nullable.copy()
    holes.loc[holes.index[:3], "trt"] = pd.NA
    assert MEMoE.from_formula("logbili ~ year", holes, "id", **kwargs).n_dropped == 3
    np.testing.assert_allclose(res.predict(nullable.head(5)), plain.predict(pbc.head(5)),
                               rtol=1e-7)
    boolean = pbc.assign(treated=(pbc["trt"] == 1).astype("boolean"))
    assert MEMoE.from_formula("logbili ~ year", boolean, "id", gate_formula="~ treated",
                              n_experts=2).structure.exog_gate_names[1] == "treated[T.True]"
