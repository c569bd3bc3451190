r"""Relating the experts (classes) of a fitted MEMoE to external variables (internal): the
three-step methods behind :mod:`pymemoe.three_step`.

Step 1 is the fitted MEMoE, with posterior probabilities tau_ik = P(c_i = k | y_i). Step 2
assigns each subject to its modal expert s_i = argmax_k tau_ik and estimates the
*classification error* of that assignment (Vermunt 2010)::

    D_kl = P(s = l | c = k) = sum_i tau_ik [s_i = l] / sum_i tau_ik          (K x K, rows sum to 1)

Step 3 relates the classes to a per-subject variable: a distal outcome z_i (one law per expert
with parameters theta_k) or predictors x_i of membership (a multinomial logit with coefficients
beta_k, beta_1 = 0). Three ways:

* **modal**: treat s_i as the class. Biased towards no association when D is not the identity.
* **BCH** (Bolck, Croon & Hagenaars 2004; Vermunt 2010): weight subject i in class k by
  w_ik = (D^-1)_{s_i k} (rows sum to 1; entries may be negative) and solve the weighted
  estimating equations sum_i sum_k w_ik psi_k(z_i; theta_k) = 0. Since E[w_ik | c_i] equals
  [c_i = k] when D is right, the weighted equations are unbiased.
* **ML** (Vermunt 2010): s_i is a single indicator of c_i with the known error matrix D::

      L_i = sum_k P(c_i = k | x_i) D_{k s_i} f_k(z_i)

  maximised by EM (posterior r_ik proportional to each term; the M-step is the weighted MLE
  with weights r_ik) with a last check of the gradient.

**Standard errors.** Modal and BCH: the sandwich of their estimating equations over subjects,
A^-1 B A^-1. ML: the inverse observed information of the step-3 likelihood. Both treat step 1
as known. The correction of Bakk, Oberski & Vermunt (2014) adds the step-1 uncertainty: with
theta_3 the step-3 estimates as a function of the step-1 parameters theta_1 (through tau and D,
the modal assignments held fixed), J = d theta_3 / d theta_1 by the implicit function theorem,

    J = A^-1 dPsi/dtheta_1,        V = V_3 + J V_1 J',

A = -dPsi/dtheta_3 the step-3 estimating function's derivative and V_1 the covariance of the
MEMoE's estimates. dPsi/dtheta_1 is a central difference of the summed estimating function at
fixed theta_3 over E-steps at theta_1 +- h. Modal estimates do not depend on theta_1 through
a smooth path (the assignments are held fixed), so they get no correction.

References
----------
Bolck, Croon & Hagenaars (2004), Estimating latent structure models with categorical variables:
one-step versus three-step estimators. Political Analysis 12(1).
Vermunt (2010), Latent class modeling with covariates: two improved three-step approaches.
Political Analysis 18(4).
Bakk, Tekle & Vermunt (2013), Estimating the association between latent class membership and
external variables using bias-adjusted three-step approaches. Sociological Methodology 43.
Bakk, Oberski & Vermunt (2014), Relating latent class assignments to external variables:
standard errors for correct inference. Political Analysis 22(4).
Bakk & Kuha (2018), Two-step estimation of models between latent classes and external
variables. Psychometrika 83(4).
"""
