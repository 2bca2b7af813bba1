"""Fixtures of the hyperprior tests (helpers in hp_inputs.py)."""

import pytest
from hp_inputs import low_rank_tokens, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def tokens():
    return low_rank_tokens(3, seed=7)
