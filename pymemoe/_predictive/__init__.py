r"""The predictive engine: predictions, their uncertainty, predictive laws and residuals
(internal).

Every computation of pymemoe that evaluates the fitted model on rows (predictions, prediction
sets, cross-validation, plots, residuals, the parametric bootstrap) goes through this
subpackage, and it is the only one beyond the fit that calls the model's core (the E-step,
the gating, the family's data). The public functions are in :mod:`pymemoe.prediction`.

Notation as in :mod:`pymemoe.model`: a row (visit) j of subject i has fixed-effects design x_j
(expert-specific then shared columns), random-effects design z_j and the subject's baseline
covariates w_i; expert k has fixed effects beta_k, random-effects covariance D_k and residual
variance sigma2_k; the gating gives pi_ik = softmax_k(w_i' gamma_k).

**Marginal** (population) prediction, from the baseline covariates only::

    E[y_j | w_i] = sum_k pi_ik x_j' beta_k

``kind="expert"`` returns the K expert means x_j' beta_k separately.

**Conditional** (subject-specific) prediction, from the subject's observed outcomes y_i^h (its
*history*): the posterior expert probabilities and, per expert, the conditional mean and
covariance of the random effects (exact Laplace step, :func:`pymemoe.families._lmm.expert_moments`)::

    tau_ik   = pi_ik f(y_i^h | k) / sum_l pi_il f(y_i^h | l)
    b_hat_ik = E[b_i | y_i^h, k],    Sigma_ik = Var[b_i | y_i^h, k]
    E[y_j | y_i^h] = sum_k tau_ik (x_j' beta_k + z_j' b_hat_ik)

On the fitting data (``newdata=None``) every row is history, and this is the model's fitted value.

**Dynamic prediction.** With new data, a row whose outcome is missing (NaN), or whose time is
after a ``landmark``, is a *future* row: it is not in the history, and its prediction uses the
posterior computed from the history rows only. A subject without history has tau_ik = pi_ik,
b_hat_ik = 0 and Sigma_ik = D_k, so its conditional prediction is the marginal one. The posterior
is computed for all subjects at once from per-subject sufficient statistics in which the future
rows carry weight zero.

**Predictive law of one new observation.** Given the expert, y_j is Gaussian, so its
predictive law is the Gaussian mixture::

    conditional:  sum_k tau_ik N(x_j' beta_k + z_j' b_hat_ik,  z_j' Sigma_ik z_j + sigma2_k)
    marginal:     sum_k pi_ik  N(x_j' beta_k,                  z_j' D_k z_j      + sigma2_k)

Prediction sets from these laws are in :mod:`pymemoe.prediction`; cross-validation
over subjects in :mod:`pymemoe.crossval`.

**Binomial and Poisson experts.** With a link g the expert mean of a row is no longer
x_j' beta_k but an integral over the random effects, on the response scale (a success
probability, or a count's mean with the row's offset o_j)::

    mu_jk(b) = g^{-1}(o_j + x_j' beta_k + z_j' b)
    marginal:     E[y_j | w_i]   = sum_k pi_ik  E_{b ~ N(0, D_k)}       mu_jk(b)
    conditional:  E[y_j | y_i^h] = sum_k tau_ik E_{b ~ p_k(b | y_i^h)} mu_jk(b)

the first a one-dimensional integral over z_j' b ~ N(0, z_j' D_k z_j) (closed form for
Poisson, the trapezoid rule for binomial: :func:`pymemoe.families._glmm_kernel.glmm_marginal_mean`), the
second under the fit's approximate posterior of b
(its adaptive quadrature nodes, or N(b_hat_ik, Sigma_ik) for Laplace), with tau_ik from the
same approximate likelihood as ``res.llf``. The component variances follow from the first two
moments of mu over the same law of b (E[mu^2] by the same integrals)::

    Poisson counts:               Var[y_j | k] = E[mu] + Var[mu]
    binomial proportions y / m:   Var[y_j / m_j | k] = (E[mu] - E[mu^2]) / m_j + Var[mu]

(m_j = 1: the Bernoulli variance E[mu] (1 - E[mu]); NaN for rows of a ``successes +
failures`` model whose number of trials is not given). The component laws are discrete and
not normal, so prediction sets refuse them.

**Standard errors of predicted means** (:func:`get_prediction`). A predicted mean m(theta) is a
function of the parameter vector theta (``results.params``); its delta-method standard error is
sqrt(g' V g) with g = dm/dtheta and V = ``results.cov_params()``. For ``kind="expert"``
m = x' beta_k, so g is x on the coefficients of expert k (and the shared ones) and the standard
error is exactly sqrt(x' V_k x), V_k the covariance of those coefficients. For
``kind="marginal"`` the gradient is analytic: d m / d beta_k = pi_k x and
d m / d gamma_l = pi_l (x' beta_l - m) w. For ``kind="conditional"`` the posterior tau_ik and
the modes b_hat_ik are also functions of theta, and g is their central-difference Jacobian
(one posterior per parameter and direction); the subject's observed outcomes are held fixed, so
the standard error is that of the subject-specific mean given its data, not a prediction error.
A parameter without a standard error (NaN, at a boundary) makes the standard error of every
prediction that depends on it NaN.

**Residuals.** ``y_j - E[y_j | y_i]`` on the fitting data (:meth:`MEMoEResults.resid`, as
statsmodels' ``MixedLM``) and, for model checking, the within-subject *whitened* residuals of
each expert: with V_ik = Z_i D_k Z_i' + sigma2_k I = L_ik L_ik' (Cholesky),

    e_ik = L_ik^-1 (y_i - X_i beta_k),

which are independent standard normal given expert k when the expert is correctly specified.
With the subject's rows in time order, e_ik are its standardised one-step-ahead prediction
errors (the Cholesky factor is the prediction-error decomposition). They are computed for all
subjects of one size n_i at once (one batched Cholesky per distinct n_i, never a loop over
subjects). :mod:`pymemoe.diagnostics` combines them over experts.

The engine's modules
--------------------
* ``rows``: :func:`design_rows` (row-level designs of the fitting data or of new data, with the
  checks of new data), :func:`history_mask`, :func:`observed_outcome`, :func:`require_rows`;
* ``posterior``: :func:`subject_posterior` (tau, b_hat and Sigma per subject from its history,
  at the fitted or at other parameters);
* ``laws``: :class:`ComponentLaws` (weights, means and variances per row and expert, with the
  mixture's pdf and cdf), :func:`component_laws`, :func:`expert_means`,
  :func:`point_prediction`, :func:`gating_probabilities`, :func:`laws_of`;
* ``jacobian``: :func:`prediction_jacobian`, :func:`delta_se` (delta-method standard errors);
* ``residuals``: :func:`expert_residuals` (raw or whitened), :func:`observed_response`.

What depends on the expert family it asks the family (:mod:`pymemoe.families.base`).

References
----------
Proust-Lima, Philipps & Liquet (2017), the R package lcmm (``predictY``, ``predictClass``,
``predictL``). Hyndman (1996), Computing and graphing highest density regions. The American
Statistician 50(2). Rizopoulos (2011), Dynamic predictions and prospective accuracy in joint
models for longitudinal and time-to-event data. Biometrics 67(3).
"""
