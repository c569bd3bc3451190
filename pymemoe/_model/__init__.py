"""The statistical model shared by fitting, inference and prediction (internal).

* ``params``: the parameters (``Params``), the model's structure (``Structure``), the user
  and internal vectors, their labels and kinds, the chain rule
* ``scales``: scalars of the data that tolerances and boundary rules use (``DataSummary``)
* ``gating``: the multinomial-logit gating: log-probabilities, soft-label Newton step
* ``likelihood``: the E-step, the observed log-likelihood and its scores (Fisher's identity)
* ``boundary``: which estimates sit on the boundary of the parameter space, and what to say

The expert families (:mod:`pymemoe.families`) supply the experts' densities; this subpackage
combines them with the gating and knows no family by name.
"""
