"""Known experts (``known_class``): subjects whose expert is known contribute pi_ic f(y_i | c);
fixed prior probabilities (``class_prior``): subjects that contribute sum_k p_ik f(y_i | k).

References, independent of pymemoe's kernels:
- every subject labelled: the likelihood factorises, so the fit equals statsmodels' MixedLM
  (ML) on each expert's subjects plus MNLogit of the labels on the gating covariates;
- some subjects labelled: the log-likelihood equals the dense computation of tests/truth.py
  with the labelled subjects' sums restricted to their expert; the analytic score equals the
  numerical gradient of the log-likelihood; with fixed priors, the same dense computation
  with those subjects' gating probabilities replaced, and the inverse observed information
  against statsmodels' numerical Hessian of the log-likelihood.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.tools.numdiff import approx_fprime, approx_hess3

from pymemoe import MEMoE, simulate

from truth import dense_loglike

MODEL = dict(re_formula="~ year", gate_formula="~ age", n_experts=2)


@pytest.fixture(scope="module")
def labelled(pbc):
    """PBCseq with every subject labelled by the modal expert of an unlabelled fit."""
    res0 = MEMoE.from_formula("logbili ~ year", pbc, "id", **MODEL).fit(random_state=0)
    return pbc.assign(known=pbc["id"].map(res0.predicted_class).astype(float))


def test_all_labelled_equals_separate_mixed_models_and_a_multinomial_logit(labelled):
    res = MEMoE.from_formula("logbili ~ year", labelled, "id", known_class="known",
                             **MODEL).fit(random_state=0)
    total = 0.0
    for k in (1, 2):
        sub = labelled[labelled["known"] == k]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mixed = sm.MixedLM.from_formula("logbili ~ year", sub, groups="id",
                                            re_formula="~ year").fit(reml=False,
                                                                     method=["lbfgs"],
                                                                     gtol=1e-10)
        total += mixed.llf
        np.testing.assert_allclose(res.fe_params[k], mixed.fe_params, rtol=1e-5)
        np.testing.assert_allclose(res.cov_re[k].to_numpy(), mixed.cov_re.to_numpy(),
                                   rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(res.scale[k], mixed.scale, rtol=1e-4)
    first = labelled.groupby("id").first()
    mnl = sm.MNLogit(first["known"].to_numpy() - 1, sm.add_constant(first["age"].to_numpy())
                     ).fit(disp=0, tol=1e-12)
    total += mnl.llf
    np.testing.assert_allclose(res.gate_params[2], np.asarray(mnl.params).ravel(), rtol=1e-6)
    np.testing.assert_allclose(res.bse["gate"], np.asarray(mnl.bse).ravel(), rtol=1e-5)
    assert res.llf >= total - 1e-6 and res.llf - total < 1e-5
    # every posterior is the label, and the experts keep the labels' numbering
    np.testing.assert_array_equal(res.predicted_class, first["known"].astype(int))
    assert set(np.unique(res.posterior.to_numpy())) <= {0.0, 1.0}


@pytest.fixture(scope="module")
def partly(labelled):
    """A third of the subjects labelled, with the labels swapped (1 <-> 2) so that the
    labels, not the experts' sizes, fix the numbering."""
    keep = labelled["id"] % 3 == 0
    data = labelled.assign(known=np.where(keep, 3.0 - labelled["known"], np.nan))
    model = MEMoE.from_formula("logbili ~ year", data, "id", known_class="known", **MODEL)
    return data, model, model.fit(random_state=0)


def test_partly_labelled_likelihood_is_the_restricted_mixture(partly):
    data, model, res = partly
    first = data.groupby("id").first()
    known = np.where(first["known"].notna(), first["known"].fillna(0) - 1, -1).astype(int)
    dense = dense_loglike(data["logbili"], np.column_stack([np.ones(len(data)), data["year"]]),
                          np.column_stack([np.ones(len(data)), data["year"]]),
                          np.column_stack([np.ones(len(data)), data["age"]]), data["id"],
                          res.gate_params.to_numpy().T, res.fe_params.to_numpy().T,
                          np.stack([res.cov_re[k].to_numpy() for k in (1, 2)]),
                          res.scale.to_numpy(), known=known)
    np.testing.assert_allclose(res.llf, dense, rtol=1e-10)
    labelled_rows = known >= 0
    np.testing.assert_array_equal(res.predicted_class[labelled_rows], known[labelled_rows] + 1)
    assert res.known_class.notna().sum() == labelled_rows.sum()
    # the swapped labels fixed the numbering: expert 2 is now the larger one
    assert res.expert_sizes["posterior_size"].iloc[1] > res.expert_sizes["posterior_size"].iloc[0]
    assert "Known experts:" in str(res.summary())


def test_the_score_is_the_gradient_of_the_restricted_likelihood(partly):
    _, model, res = partly
    point = res.params.to_numpy() * 1.01          # away from the maximum
    numeric = approx_fprime(point, model.loglike, centered=True, epsilon=1e-6)
    np.testing.assert_allclose(model.score(point), numeric, rtol=1e-5, atol=1e-4)


def test_a_parametric_bootstrap_keeps_the_known_experts(partly):
    data, _, res = partly
    sim = simulate(res, random_state=3)
    first = data.groupby("id").first()
    known = first["known"].notna().to_numpy()
    np.testing.assert_array_equal(sim.expert[known], first["known"][known].astype(int))
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs).fit(
        random_state=0)
    assert refit.known_class.notna().sum() == known.sum()


def test_bad_labels_are_named(pbc):
    with pytest.raises(ValueError, match="subject 1 has 3, not an expert 1..2"):
        MEMoE.from_formula("logbili ~ year", pbc.assign(k=3.0), "id", known_class="k", **MODEL)
    varying = pbc.assign(k=np.where(pbc.groupby("id").cumcount() == 0, 1.0, 2.0))
    with pytest.raises(ValueError, match="differs between the rows of subject 1"):
        MEMoE.from_formula("logbili ~ year", varying, "id", known_class="k", **MODEL)
    with pytest.raises(ValueError, match="known_class column 'k'.*1.5"):
        MEMoE.from_formula("logbili ~ year", pbc.assign(k=1.5), "id", known_class="k", **MODEL)
    with pytest.raises(ValueError, match="not a column"):
        MEMoE.from_formula("logbili ~ year", pbc, "id", known_class="nope", **MODEL)
    before = pbc.copy()
    MEMoE.from_formula("logbili ~ year", pbc.assign(k=np.nan), "id", known_class="k", **MODEL)
    pd.testing.assert_frame_equal(pbc, before)


def test_missing_labels_drop_no_row(pbc):
    data = pbc.assign(k=np.where(pbc["id"] == 1, 1.0, np.nan))
    model = MEMoE.from_formula("logbili ~ year", data, "id", known_class="k", **MODEL)
    assert model.n_dropped == 0 and model.data.known_class[0] == 0
    assert (model.data.known_class[1:] == -1).all()


def test_editing_the_labels_returned_changes_nothing(partly):
    _, model, res = partly
    before = res.known_class.copy()
    labels = res.known_class
    labels.iloc[:] = 1
    pd.testing.assert_series_equal(res.known_class, before)
    assert (model.data.known_class >= -1).all() and (model.data.known_class == 1).any()



@pytest.fixture(scope="module")
def priors(pbc):
    """A quarter of the subjects with fixed prior probabilities (0.8 / 0.2 for women, 0.3 /
    0.7 for men)."""
    fixed = pbc["id"] % 4 == 0
    p1 = np.where(fixed, np.where(pbc["sex"] == "f", 0.8, 0.3), np.nan)
    data = pbc.assign(p1=p1, p2=1.0 - p1)
    model = MEMoE.from_formula("logbili ~ year", data, "id", class_prior=["p1", "p2"], **MODEL)
    return data, model, model.fit(random_state=0)


def test_fixed_priors_replace_the_gating(priors):
    data, model, res = priors
    first = data.groupby("id").first()
    fixed = first[["p1", "p2"]].to_numpy()
    design = np.column_stack([np.ones(len(data)), data["year"]])
    dense = dense_loglike(data["logbili"], design, design,
                          np.column_stack([np.ones(len(data)), data["age"]]), data["id"],
                          res.gate_params.to_numpy().T, res.fe_params.to_numpy().T,
                          np.stack([res.cov_re[k].to_numpy() for k in (1, 2)]),
                          res.scale.to_numpy(), fixed_prior=fixed)
    np.testing.assert_allclose(res.llf, dense, rtol=1e-10)
    rows = np.isfinite(fixed[:, 0])
    np.testing.assert_allclose(res.prior.to_numpy()[rows], fixed[rows])
    assert "Fixed priors: 78 subjects" in " ".join(str(res.summary()).split())
    point = res.params.to_numpy() * 1.01
    numeric = approx_fprime(point, model.loglike, centered=True, epsilon=1e-6)
    np.testing.assert_allclose(model.score(point), numeric, rtol=1e-5, atol=1e-4)


def test_the_information_leaves_the_fixed_subjects_out_of_the_gating(priors):
    _, model, res = priors
    hess = approx_hess3(res.params.to_numpy(), model.loglike)
    np.testing.assert_allclose(np.linalg.inv(res.cov_params().to_numpy()), -hess,
                               rtol=2e-3, atol=1e-2)


def test_a_bootstrap_keeps_the_fixed_priors(priors):
    _, _, res = priors
    sim = simulate(res, random_state=2)
    assert sim.formula_kwargs["class_prior"] == ["p1", "p2"]
    refit = MEMoE.from_formula(data=sim.data, **sim.formula_kwargs, **sim.model_kwargs).fit(
        random_state=0)
    np.testing.assert_allclose(refit.prior.loc[4], res.prior.loc[4])


def test_bad_priors_are_named(pbc):
    with pytest.raises(ValueError, match="subject 1 are not probabilities summing to 1"):
        MEMoE.from_formula("logbili ~ year", pbc.assign(a=0.5, b=0.6), "id",
                           class_prior=["a", "b"], **MODEL)
    varying = pbc.assign(a=np.where(pbc.groupby("id").cumcount() == 0, 0.4, 0.5))
    with pytest.raises(ValueError, match="differs between the rows of subject 1"):
        MEMoE.from_formula("logbili ~ year", varying.assign(b=1 - varying["a"]), "id",
                           class_prior=["a", "b"], **MODEL)
    with pytest.raises(ValueError, match="one per expert"):
        MEMoE.from_formula("logbili ~ year", pbc.assign(a=1.0), "id", class_prior=["a"],
                           **MODEL)
    both = pbc.assign(a=0.5, b=0.5, k=1.0)
    with pytest.raises(ValueError, match="subject 1 has both a known expert"):
        MEMoE.from_formula("logbili ~ year", both, "id", class_prior=["a", "b"],
                           known_class="k", **MODEL)
