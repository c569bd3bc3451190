"""From a user's data to the arrays of a model (internal): formulas and patsy, input checks,
subject labels, and every question about a fitted model's formulas.

* ``formula``: ``build_design``: formulas + data -> :class:`DesignSpec` and row arrays
  (rows with missing values dropped jointly); the spec pickles
* ``new_data``: designs, outcome and offset of new rows from a fitted spec
* ``variables``: which data columns and caller's names a formula reads
* ``questions``: required columns, factors and levels, typical values, plotting grids
* ``hypotheses``: linear hypotheses written with parameter names
* ``dtypes``: pandas' nullable dtypes as patsy reads them
* ``subjects``: subject labels and codes
* ``checks``: checks of the input that name the column, subject or row at fault
* ``inputs``: the arrays of ``MEMoE(...)``: coercion, names, missing rows, checks
* ``subject_level``: one value or one design row per subject after the fit (three-step)

patsy is imported in this subpackage only.
"""
