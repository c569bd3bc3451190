"""Results pickle, save and load (formula and array models), with identical parameters,
log-likelihood, posteriors and predictions after loading, also in a fresh interpreter."""
import copy
import io
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from pymemoe import MEMoE, MEMoEResults
from pymemoe.results import load

from helpers import assert_same_results, new_subjects


def test_pickle_roundtrip_formula_model(pbc, pbc_fit):
    res = pbc_fit
    back = pickle.loads(pickle.dumps(res))
    assert_same_results(res, back)
    assert back.summary().as_text() == res.summary().as_text()
    new = new_subjects(pbc)
    before = new.copy(deep=True)
    for kind in ("marginal", "expert", "conditional"):
        expected, got = res.predict(new, kind=kind), back.predict(new, kind=kind)
        assert np.array_equal(expected.to_numpy(), got.to_numpy()), kind
        pdt.assert_index_equal(expected.index, got.index)
    pdt.assert_frame_equal(back.predict_class(new), res.predict_class(new), check_exact=True)
    pdt.assert_frame_equal(back.prediction_set(new), res.prediction_set(new), check_exact=True)
    assert np.array_equal(back.fittedvalues.to_numpy(), res.fittedvalues.to_numpy())
    pdt.assert_frame_equal(new, before, check_exact=True)


def test_save_and_load(pbc_fit, tmp_path):
    path = tmp_path / "fit.pkl"
    pbc_fit.save(path)
    assert_same_results(MEMoEResults.load(path), pbc_fit)
    assert_same_results(load(str(path)), pbc_fit)
    buffer = io.BytesIO()
    pbc_fit.save(buffer)
    buffer.seek(0)
    assert_same_results(MEMoEResults.load(buffer), pbc_fit)
    # a plain pickle of the results loads too
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(pbc_fit))
    assert_same_results(load(plain), pbc_fit)


def test_load_rejects_other_pickles(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="does not hold pymemoe results"):
        MEMoEResults.load(path)


def test_load_in_a_fresh_interpreter(pbc, pbc_fit, tmp_path):
    """No hidden in-process state: another Python process loads and predicts identically."""
    path, new_path, out = tmp_path / "fit.pkl", tmp_path / "new.pkl", tmp_path / "out.pkl"
    pbc_fit.save(path)
    new = new_subjects(pbc)
    new.to_pickle(new_path)
    code = (
        "import pickle, sys, pandas as pd\n"
        "from pymemoe.results import load\n"
        "res = load(sys.argv[1]); new = pd.read_pickle(sys.argv[2])\n"
        "out = {k: res.predict(new, kind=k) for k in ('marginal', 'conditional')}\n"
        "out['posterior'] = res.posterior; out['llf'] = res.llf\n"
        "pickle.dump(out, open(sys.argv[3], 'wb'))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), str(new_path), str(out)], check=True)
    got = pd.read_pickle(out)
    assert got["llf"] == pbc_fit.llf
    assert np.array_equal(got["posterior"].to_numpy(), pbc_fit.posterior.to_numpy())
    for kind in ("marginal", "conditional"):
        assert np.array_equal(got[kind].to_numpy(), pbc_fit.predict(new, kind=kind).to_numpy())


def test_pickle_roundtrip_array_model(pbc):
    exog = pd.DataFrame({"Intercept": 1.0, "year": pbc["year"]})
    gate = pd.DataFrame({"Intercept": 1.0, "age": pbc["age"]})
    model = MEMoE(np.log(pbc["bili"]), exog, pbc["id"], exog_re=exog, exog_gate=gate, n_experts=2)
    res = model.fit(n_starts=2, random_state=1)
    back = pickle.loads(pickle.dumps(res))
    assert_same_results(res, back)
    assert back.model.spec is None
    for kind in ("marginal", "conditional"):
        assert np.array_equal(back.predict(kind=kind).to_numpy(), res.predict(kind=kind).to_numpy())
    assert np.array_equal(back.model.loglikeobs(back.params), res.model.loglikeobs(res.params))
    assert_same_results(copy.deepcopy(res), res)
