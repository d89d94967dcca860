"""One torch thread per test: the networks here are tiny, and on a busy machine torch's thread pool costs
more than it gains (a tiny FeatureNet pass: 0.02 s on one thread, seconds on two contended ones)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
