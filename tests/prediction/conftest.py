import pytest

from prediction_cases import fit, simulate


@pytest.fixture(scope="session")
def sim():
    return simulate(300, seed=11)


@pytest.fixture(scope="session")
def sim_fit(sim):
    return fit(sim)


