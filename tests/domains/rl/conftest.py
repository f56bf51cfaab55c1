"""rl tests: skipped without the rl extra; one thread (the CPU is shared)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("stable_baselines3", reason="pip install -e .[rl]")
pytest.importorskip("gymnasium", reason="pip install -e .[rl]")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
