"""Reductions over blocks of subjects: the fit and its standard errors do not depend on the
number of threads (bit for bit) nor on the block size (beyond rounding); the three-term
observed information equals the direct central-difference Jacobian of the whole score."""
import warnings

import numpy as np
import pytest

from pymemoe import MEMoE
from pymemoe._estimation.inference import (boundary_parameters, observed_information,
                                           observed_information_numeric)
from pymemoe._execution.blocks import LocalBlocks, block_bounds, tree_sum
from pymemoe.families.gaussian import SubjectData

FORMULA = dict(formula="y ~ time", groups="id", re_formula="~ time", gate_formula="~ x1 + x2")


@pytest.mark.parametrize("n, size", [(10, 3), (10, 10), (10, 100), (1, 4), (4097, 4096)])
def test_block_bounds_cover_every_subject_once(n, size):
    bounds = block_bounds(n, size)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    assert np.array_equal(covered, np.arange(n))
    lengths = [b - a for a, b in bounds]
    assert max(lengths) <= size and max(lengths) - min(lengths) <= 1


def test_tree_sum_adds_nested_partials_in_order():
    parts = [(1.0, np.array([1.0, 2.0]), {"a": np.eye(2)}, None), (2.0, np.array([3.0, 4.0]), {"a": np.eye(2)}, None)]
    total = tree_sum(parts)
    assert total[0] == 3.0 and np.array_equal(total[1], [4.0, 6.0])
    assert np.array_equal(total[2]["a"], 2 * np.eye(2)) and total[3] is None
    assert parts[0][1].tolist() == [1.0, 2.0]          # the first partial is not modified


def test_blocks_see_every_subject_with_its_own_statistics():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 37, size=300)
    y, x = rng.normal(size=300), np.column_stack([np.ones(300), rng.normal(size=300)])
    data = SubjectData.from_arrays(y, x, x[:, :1], x[:, :1], groups)
    for n_jobs in (1, 2):
        blocks = LocalBlocks(data, block_size=5, n_jobs=n_jobs)
        yy = blocks.concatenate(blocks.map(lambda block, cache: block.yy, blocks.empty_caches()))
        assert np.array_equal(yy, data.yy)
        assert blocks.reduce(lambda block, cache: block.n_groups, blocks.empty_caches()) == data.n_groups
        blocks.close()


def _fit(df, **fit_kw):
    model = MEMoE.from_formula(data=df, n_experts=2, **FORMULA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, model.fit(n_starts=2, random_state=4, cov_type="robust", **fit_kw)


def test_fit_is_identical_in_any_number_of_threads_and_close_for_any_block_size(sim500):
    _, one = _fit(sim500, n_jobs=1, block_size=64)
    _, two = _fit(sim500, n_jobs=2, block_size=64)
    assert np.array_equal(one.params.to_numpy(), two.params.to_numpy())
    assert np.array_equal(one.bse.to_numpy(), two.bse.to_numpy())
    assert np.array_equal(one.posterior.to_numpy(), two.posterior.to_numpy())
    _, whole = _fit(sim500, n_jobs=1, block_size=10_000)
    assert whole.llf == pytest.approx(one.llf, abs=1e-8)
    np.testing.assert_allclose(whole.params.to_numpy(), one.params.to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(whole.bse.to_numpy(), one.bse.to_numpy(), rtol=1e-4)


@pytest.mark.parametrize("options", [
    dict(),
    dict(cov_re="proportional", scale="shared"),
    dict(cov_re="shared", re_structure="diagonal"),
    dict(shared_formula="~ x1"),
    dict(re_formula="0"),
    dict(n_experts=1),
])
def test_three_term_information_equals_the_jacobian_of_the_whole_score(sim500, options):
    """Independent check: the direct central-difference Jacobian of the summed analytic score
    (observed_information_numeric) against Louis' decomposition (observed_information), with
    the experts' term in closed form (pymemoe.families._lmm_hessian) and by differencing gradients."""
    kw = {**FORMULA, "n_experts": 2, **options}
    model = MEMoE.from_formula(data=sim500, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(n_starts=2, random_state=0, cov_type="none")
    fixed = boundary_parameters(model.structure, res.state, model.data)
    direct = observed_information_numeric(model.data, model.structure, res.state, fixed=fixed)
    for block_size, closed_form in ((10_000, True), (77, True), (77, False)):
        louis = observed_information(model.data, model.structure, res.state, fixed=fixed,
                                     block_size=block_size, closed_form=closed_form)
        scale = np.sqrt(np.outer(np.abs(np.diag(direct)), np.abs(np.diag(direct)))) + 1e-300
        assert np.max(np.abs(louis - direct) / scale) < 1e-6
