import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)
