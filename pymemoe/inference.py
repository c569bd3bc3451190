"""The former home of the covariance estimators, kept so that code written for it still runs.

They are in :mod:`pymemoe._estimation.inference` (internal; its docstring states the
method). Users choose them with ``MEMoE.fit(cov_type=...)``.
"""
from ._estimation.inference import (COV_TYPES, CovEstimate, DeferredCov, boundary_parameters,
                                    check_cov_type, cov_none, cov_oim, cov_robust, delta_method,
                                    estimate_cov, has_closed_form, information_terms,
                                    observed_information, observed_information_numeric)

__all__ = ["CovEstimate", "DeferredCov", "COV_TYPES", "check_cov_type", "estimate_cov",
           "observed_information", "observed_information_numeric", "information_terms",
           "has_closed_form", "delta_method", "boundary_parameters", "cov_oim", "cov_robust",
           "cov_none"]
