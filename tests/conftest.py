import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from truth import simulate_memoe  # noqa: E402

from pymemoe.datasets import load_pbcseq  # noqa: E402

RESULTS = Path(__file__).parent / "results"
GATE_R = "~ C(sex, Treatment('m')) + age + C(trt)"  # the R fits' coding (reference m, 0)


@pytest.fixture(scope="session")
def pbc() -> pd.DataFrame:
    df = load_pbcseq()
    return df.assign(year=df["day"] / 365.25, logbili=np.log(df["bili"]))


@pytest.fixture(scope="session")
def sim500() -> pd.DataFrame:
    return simulate_memoe(500, seed=2026)
