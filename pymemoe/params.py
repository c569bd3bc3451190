"""The former home of the parameter objects, kept so that code written for it still runs.

:class:`~pymemoe.Params` (the estimates, or the truth given to :func:`pymemoe.simulate`) is
exported by the package; the rest is in :mod:`pymemoe._model.params` (internal).
"""
from ._model.params import (ParamKind, Params, Structure, chain_gradient, from_internal, from_user,
                            internal_bounds, param_kinds, param_labels, psd_cholesky, reorder,
                            to_internal, to_user)

__all__ = ["Structure", "Params", "ParamKind", "param_kinds", "param_labels", "to_user",
           "from_user", "to_internal", "from_internal", "internal_bounds", "chain_gradient",
           "reorder", "psd_cholesky"]
