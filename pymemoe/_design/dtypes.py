"""pandas' nullable dtypes (``Int64``, ``Float64``, ``boolean``, ``string``) as the numpy
dtypes patsy understands, without modifying the user's frame."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plain_dtypes"]


def plain_dtypes(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with pandas' nullable dtypes replaced by the numpy dtypes patsy understands.

    ``Int64``/``UInt8``... become int64 (float64 with NaN where a value is missing), ``Float64``
    float64, ``boolean`` bool (object with NaN where missing), ``string`` object (NaN where
    missing). Other columns are untouched, and the user's frame is never modified (a new frame
    is returned when anything changes).

    Examples
    --------
    >>> df = pd.DataFrame({"n": pd.array([1, 2], dtype="Int64"), "s": pd.array(["a", None], dtype="string")})
    >>> plain_dtypes(df).dtypes.astype(str).tolist()
    ['int64', 'object']
    """
    converted = {}
    for column in data.columns:
        values = data[column]
        dtype = values.dtype
        if not pd.api.types.is_extension_array_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            continue
        missing = values.isna().to_numpy()
        if pd.api.types.is_bool_dtype(dtype):
            converted[column] = (values.astype(bool) if not missing.any()
                                 else values.astype(object).where(~missing, np.nan))
        elif pd.api.types.is_integer_dtype(dtype) and not missing.any():
            converted[column] = values.astype(np.int64)
        elif pd.api.types.is_numeric_dtype(dtype):
            converted[column] = pd.Series(values.to_numpy(dtype=float, na_value=np.nan),
                                          index=values.index)
        elif pd.api.types.is_string_dtype(dtype) and dtype != object:
            if not isinstance(dtype, pd.StringDtype) or dtype.na_value is np.nan:
                continue        # pandas 3's default "str" dtype: patsy reads it as it is
            converted[column] = values.astype(object).where(~missing, np.nan)
    if not converted:
        return data
    out = data.copy(deep=False)        # new columns replace, never overwrite, the user's arrays
    for column, values in converted.items():
        out[column] = values
    return out
