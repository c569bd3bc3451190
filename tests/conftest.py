import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pymemoe import MEMoE  # noqa: E402
from pymemoe.datasets import load_pbcseq  # noqa: E402

from helpers import FORMULA, GATE  # noqa: E402
from truth import simulate_memoe  # noqa: E402


@pytest.fixture(scope="session")
def pbc() -> pd.DataFrame:
    df = load_pbcseq()
    return df.assign(year=df["day"] / 365.25, logbili=np.log(df["bili"]))


@pytest.fixture(scope="session")
def sim500() -> pd.DataFrame:
    return simulate_memoe(500, seed=2026)


@pytest.fixture(scope="session")
def pbc_fit(pbc):
    """K = 2 on PBCseq with log, categorical and stateful-transform terms."""
    model = MEMoE.from_formula(FORMULA, pbc, "id", re_formula="~ year", gate_formula=GATE,
                               n_experts=2)
    return model.fit(n_starts=2, random_state=0)
