"""Nothing a user does with an output of a results object changes the results.

Every public attribute and method of MEMoEResults is called, everything it returns is edited in
place (pandas cells through ``iloc`` and through the arrays behind them, numpy arrays, dicts and
lists), and then every output is computed again and compared with a copy taken before the edits.
Under pandas 2 without copy-on-write, a DataFrame built on an internal array without copying
shares that array, which is exactly what this test catches; ``.ci/run`` runs it under the
lowest pandas the package claims as well as under the installed one. A new public attribute
must be added to ``OUTPUTS`` or to ``NOT_OUTPUTS`` (the test fails otherwise).
"""
import copy
import pickle

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from pymemoe import MEMoE, MEMoEResults

from helpers import GATE, new_subjects

OUTPUTS = {
    "params": lambda r: r.params, "bse": lambda r: r.bse, "zvalues": lambda r: r.zvalues,
    "tvalues": lambda r: r.tvalues, "pvalues": lambda r: r.pvalues,
    "conf_int": lambda r: r.conf_int(), "cov_params": lambda r: r.cov_params(),
    "fe_params": lambda r: r.fe_params, "gate_params": lambda r: r.gate_params,
    "cov_re": lambda r: r.cov_re, "scale": lambda r: r.scale, "posterior": lambda r: r.posterior,
    "prior": lambda r: r.prior, "posterior_trajectory": lambda r: r.posterior_trajectory,
    "predicted_class": lambda r: r.predicted_class,
    "starts": lambda r: r.starts,
    "expert_sizes": lambda r: r.expert_sizes, "random_effects": lambda r: r.random_effects,
    "fittedvalues": lambda r: r.fittedvalues, "resid": lambda r: r.resid,
    "standardized_residuals": lambda r: r.standardized_residuals(),
    "predict": lambda r: r.predict(), "predict_expert": lambda r: r.predict(kind="expert"),
    "predict_conditional": lambda r: r.predict(kind="conditional"),
    "predict_class": lambda r: r.predict_class(), "prior_class": lambda r: r.prior_class(),
    "prediction_set": lambda r: r.prediction_set(kind="marginal"),
    "get_prediction": lambda r: r.get_prediction(kind="expert").summary_frame(),
    "get_prediction_parts": lambda r: (r.get_prediction().predicted_mean,
                                       r.get_prediction().se_mean),
    "to_frame": lambda r: r.to_frame(), "postprob": lambda r: r.postprob(),
    "expert_table": lambda r: r.expert_table().to_frame(),
    "summary": lambda r: r.summary().tables, "llf_trace": lambda r: r.llf_trace,
    "start_llfs": lambda r: r.start_llfs, "param_names": lambda r: r.param_names,
    "messages": lambda r: r.messages, "state": lambda r: r.state,
    "known_class": lambda r: r.known_class,    # None here; edited in test_known_classes.py
    "weights": lambda r: r.weights,            # None here; edited in test_weights.py
    "estep": lambda r: [r.estep.tau, r.estep.log_prior, r.estep.llf_obs,
                        r.estep.moments.b_hat],
    "scalars": lambda r: [r.llf, r.aic, r.bic, r.icl, r.entropy, r.nobs, r.n_groups,
                          r.n_dropped, r.df_modelwc, r.converged, r.n_iter, r.n_experts,
                          r.cov_type],
}
# outputs of joint models only (time to event): checked on a joint fit of ``data``


def joint_outputs(data) -> dict:
    return {
        "event_counts": lambda r: r.event_counts, "hazard_ratios": lambda r: r.hazard_ratios(),
        "independence_test": lambda r: r.independence_test,
        "cumulative_incidence": lambda r: r.cumulative_incidence([1.0, 5.0]),
        "posterior_trajectory": lambda r: r.posterior_trajectory,
        "params": lambda r: r.params, "summary": lambda r: r.summary().tables,
        "posterior": lambda r: r.posterior,
        "dynamic_prediction": lambda r: r.dynamic_prediction(
            data[data["id"] <= 5], 2.0, 3.0, "year", n_draws=20, random_state=0),
    }


# not outputs to edit: the model itself (its arrays are the input data), exports to files or
# text, and the pickling machinery
NOT_OUTPUTS = {"model", "save", "load", "to_latex", "to_html", "to_markdown", "to_csv",
               "t_test", "wald_test", "llf", "aic", "bic", "icl", "entropy", "nobs", "n_groups",
               "n_dropped", "df_modelwc", "converged", "n_iter", "n_experts", "cov_type",
               "n_best", "n_finished", "fit_options", "weight_type", "cov_options"}
COVERED = {"get_prediction_parts": "get_prediction", "predict_expert": "predict",
           "predict_conditional": "predict", "scalars": None}


def _edit(obj) -> None:
    """Overwrite everything editable in ``obj``, in place."""
    if isinstance(obj, (pd.DataFrame, pd.Series)):
        values = obj.to_numpy()
        if values.flags.writeable and values.dtype.kind in "fiub":
            values[...] = 7           # the arrays behind the frame, when pandas shares them
        for j in range(obj.shape[-1] if obj.ndim == 2 else 1):
            try:
                if obj.ndim == 2:
                    obj.iloc[:, j] = 7 if obj.dtypes.iloc[j].kind in "fiub" else "x"
                else:
                    obj.iloc[:] = 7 if obj.dtype.kind in "fiub" else "x"
            except (TypeError, ValueError):
                pass
    elif isinstance(obj, np.ndarray):
        if obj.flags.writeable:
            obj[...] = 7
    elif isinstance(obj, dict):
        for value in obj.values():
            _edit(value)
        obj.clear()
    elif isinstance(obj, list):
        for value in obj:
            _edit(value)
        obj[:] = ["x"] * len(obj)
    elif isinstance(obj, tuple):
        for value in obj:
            _edit(value)
    elif hasattr(obj, "__dataclass_fields__"):           # Params: read-only arrays
        for name in obj.__dataclass_fields__:
            value = getattr(obj, name)
            if isinstance(value, np.ndarray):
                with pytest.raises(ValueError):
                    value[...] = 7
    elif hasattr(obj, "tables"):
        _edit(obj.tables)


def _same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif hasattr(a, "__dataclass_fields__"):
        for name in a.__dataclass_fields__:
            _same(getattr(a, name), getattr(b, name))
    else:
        assert a == b or (a != a and b != b)
    return True


@pytest.fixture(scope="module")
def res(pbc):
    return MEMoE.from_formula("logbili ~ year", pbc, "id", re_formula="~ year",
                              gate_formula="~ age", n_experts=2).fit(n_starts=2, random_state=0)


def test_every_public_attribute_is_checked():
    public = {name for name in dir(MEMoEResults) if not name.startswith("_")}
    checked = {COVERED.get(name, name) for name in OUTPUTS} | NOT_OUTPUTS | set(joint_outputs(None))
    assert public <= checked, f"add {sorted(public - checked)} to OUTPUTS or NOT_OUTPUTS"


def _check_outputs_survive_edits(res, outputs) -> None:
    before = {name: copy.deepcopy(get(res)) for name, get in outputs.items()}
    for get in outputs.values():
        _edit(get(res))
    for name, get in outputs.items():
        try:
            _same(get(res), before[name])
        except AssertionError as err:
            raise AssertionError(f"editing the outputs changed {name}: {err}") from None


def test_editing_the_outputs_of_a_joint_model_never_changes_them(pbc):
    from pymemoe import TimeToEvent
    data = pbc.assign(fu=pbc["futime"] / 365.25)
    res = MEMoE.from_formula("logbili ~ year", data, "id", re_formula="~ year", n_experts=2,
                             survival=TimeToEvent("fu", "status", formula="~ age")
                             ).fit(n_starts=2, random_state=0)
    _check_outputs_survive_edits(res, joint_outputs(data))


def test_editing_outputs_never_changes_the_results(res):
    state = pickle.dumps((res.params, res.posterior, res.cov_params(), res.fittedvalues))
    _check_outputs_survive_edits(res, OUTPUTS)
    assert pickle.dumps((res.params, res.posterior, res.cov_params(), res.fittedvalues)) == state


def test_results_attributes_cannot_be_assigned(res):
    for name in ("llf", "params", "posterior", "bse"):
        with pytest.raises(AttributeError):
            setattr(res, name, 0.0)


def test_summary_and_tables_do_not_change_with_the_pandas_version_guarded_outputs(res):
    # the same call twice gives equal, distinct objects (a copy each time)
    assert res.posterior is not res.posterior
    assert not np.shares_memory(res.posterior.to_numpy(), res.posterior.to_numpy())
    assert not np.shares_memory(res.cov_params().to_numpy(), res.cov_params().to_numpy())


def test_predictions_do_not_modify_newdata(pbc, pbc_fit):
    new = new_subjects(pbc).sample(frac=1, random_state=5)
    new["sex"] = pd.Categorical(new["sex"])
    before = copy.deepcopy(new)
    for kind in ("marginal", "expert", "conditional"):
        pbc_fit.predict(new, kind=kind)
    pbc_fit.predict_class(new)
    pbc_fit.prior_class(new)
    pbc_fit.prediction_set(new)
    pdt.assert_frame_equal(new, before, check_exact=True)


def test_fitting_with_transforms_does_not_modify_data(pbc):
    data = pbc.copy()
    data["sex"] = pd.Categorical(data["sex"])
    before = copy.deepcopy(data)
    model = MEMoE.from_formula("np.log(bili) ~ year + standardize(chol)", data, "id",
                               re_formula="~ year", gate_formula=GATE, n_experts=2)
    res = model.fit(n_starts=2, random_state=0)
    pickle.loads(pickle.dumps(res))
    pdt.assert_frame_equal(data, before, check_exact=True)
