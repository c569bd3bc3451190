"""Fitting a MEMoE: EM with SQUAREM, the start strategy, the quasi-Newton polish, the
driver and its convergence checks, and the covariance of the estimates (internal).

``context``      what one fit needs (``EMOptions``, ``FitContext``)
``passes``       the passes over the blocks of subjects: E-step, one M-step, scores
``em``           EM (with SQUAREM) from one start; starts in threads
``polish``       L-BFGS-B on the log-likelihood; the scaled gradient
``starts``       the start strategies (grown from K - 1 experts; independent starts)
``driver``       ``run_em``: the starts, the best one, a final E-step
``convergence``  what the driver checks and reports (lme4's ``checkConv``)
``inference``    observed information, sandwich, delta method
``seeds``        ``random_state`` as a ``SeedSequence``
"""
