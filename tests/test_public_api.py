"""Every public name that the documentation of commit 88d6957 (before the layout of issue 21)
listed is still importable from the module the documentation named, and a name that moved is
the same object as at its new home (a working alias, not a copy).

The list below was taken from the API pages of that commit (the ``automodule`` members of
each public module and the package's ``__all__``); it is fixed here on purpose: it is the
promise made to code written against that version, not a description of today's modules.
"""
import importlib

import pytest

DOCUMENTED = {
    'pymemoe': ['BootstrapLRTResult', 'BoundaryWarning', 'MEMoE', 'MEMoEResults',
        'SeparationWarning', 'bootstrap_lrt', 'compare_experts', 'cross_validate', 'load',
        'simulate'],
    'pymemoe.selection': ['ExpertComparison', 'compare_experts', 'comparison_table'],
    'pymemoe.blrt': ['BootstrapLRTResult', 'bootstrap_lrt', 'stored_fit_options'],
    'pymemoe.predict': ['ComponentLaws', 'DesignRows', 'PredictiveMixture', 'SubjectPosterior',
        'component_laws', 'delta_se', 'design_rows', 'expert_means', 'expert_residuals',
        'gating_probabilities', 'get_prediction', 'history_mask', 'laws_of',
        'observed_outcome', 'point_prediction', 'predict', 'predict_class',
        'prediction_jacobian', 'predictive_mixture', 'prior_class', 'require_rows',
        'subject_posterior'],
    'pymemoe.prediction_results': ['PredictionResults'],
    'pymemoe.prediction_sets': ['SET_METHODS', 'check_alpha', 'coverage', 'covered_rows', 'prediction_set',
        'set_arrays'],
    'pymemoe.diagnostics': ['RESIDUAL_KINDS', 'fit_table', 'fitted_means', 'standardized_residuals'],
    'pymemoe.summary': ['MEMoESummary', 'build_summary', 'expert_table', 'parameter_frame',
        'postprob_table', 'summary_col', 'variance_components'],
    'pymemoe.crossval': ['CrossValidation', 'cross_validate'],
    'pymemoe.simulate': ['SimulatedData', 'heteroscedastic_variance', 'paper_settings', 'simulate'],
    'pymemoe.metrics': ['adjusted_rand_index', 'contingency_table', 'match_labels', 'relabel_matrix',
        'relabelled_variances', 'truth_vector'],
    'pymemoe.chunked': ['from_chunks', 'from_dask'],
    'pymemoe.plotting': ['plot_comparison', 'plot_fit', 'plot_llf_trace', 'plot_posterior',
        'plot_prediction_sets', 'plot_residuals', 'plot_trajectories'],
    'pymemoe.datasets': ['describe', 'load_pbcseq'],
    'pymemoe.inference': ['COV_TYPES', 'CovEstimate', 'DeferredCov', 'boundary_parameters', 'check_cov_type',
        'cov_none', 'cov_oim', 'cov_robust', 'delta_method', 'estimate_cov',
        'has_closed_form', 'information_terms', 'observed_information',
        'observed_information_numeric'],
    'pymemoe.families': ['DataSummary', 'ExpertFamily', 'ExpertGradients', 'GAUSSIAN', 'GLMMFamily',
        'GaussianFamily', 'get_family'],
    'pymemoe.exceptions': ['BestNotReplicatedWarning', 'BoundaryWarning', 'ConvergenceWarning',
        'GLMMNumericalWarning', 'HessianInversionWarning', 'SeparationWarning'],
    'pymemoe.results': ['MEMoEResults', 'load'],
    'pymemoe.model': ['MEMoE'],
    'pymemoe.params': ['ParamKind', 'Params', 'Structure', 'chain_gradient', 'from_internal', 'from_user',
        'internal_bounds', 'param_kinds', 'param_labels', 'psd_cholesky', 'reorder',
        'to_internal', 'to_user'],
    'pymemoe.distributed': ['DEFAULT_SAMPLE_LIMIT', 'DaskBlocks', 'DistributedArray', 'DistributedEStep',
        'LABEL_SAMPLE', 'Traffic', 'active_client', 'concatenate_subjects'],
}

#: where each former home's names live now (a name found there must be the same object)
NEW_HOMES = {
    "pymemoe.predict": ("pymemoe.prediction", "pymemoe._predictive"),
    "pymemoe.prediction_results": ("pymemoe.prediction",),
    "pymemoe.prediction_sets": ("pymemoe.prediction", "pymemoe._predictive.sets"),
    "pymemoe.inference": ("pymemoe._estimation.inference",),
    "pymemoe.params": ("pymemoe._model.params", "pymemoe.families"),
}


@pytest.mark.parametrize("module, name", [(m, n) for m, names in DOCUMENTED.items()
                                          for n in names])
def test_documented_name_is_importable(module, name):
    obj = getattr(importlib.import_module(module), name)
    assert obj is not None
    for home in NEW_HOMES.get(module, ()):
        new = importlib.import_module(home)
        if hasattr(new, name):
            assert getattr(new, name) is obj, f"{module}.{name} is not {home}.{name}"


def test_every_name_of_the_package_namespace_is_importable():
    import pymemoe
    missing = [name for name in pymemoe.__all__ if not hasattr(pymemoe, name)]
    assert not missing, missing
    assert set(DOCUMENTED["pymemoe"]) <= set(pymemoe.__all__)
