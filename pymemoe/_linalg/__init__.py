"""Numerical building blocks with no statistics in them (internal): small matrices in bulk
(``smallmat``) and Gauss-Hermite rules (``quadrature``)."""
