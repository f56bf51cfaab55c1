"""The README's "Using samcore in your own loop" snippets, executed as written (issue 18).

Each ```python block of that section runs in order in one namespace (later blocks use the
first block's imports), each on a fresh copy of the same small MLP, and its result is checked
against davda54/sam's reference loop (tests/samcore/test_dropin.py) or a closed form.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from tests.samcore.test_dropin import DavdaSAM

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Using samcore in your own loop"


def _snippets() -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 3))


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g))] * 3


def _loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y), {}


def _davda54_reference() -> nn.Module:
    """davda54/sam's README loop on the same model and data: the expected parameters."""
    model = _model()
    opt = DavdaSAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for x, y in _data():
        F.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)
        F.cross_entropy(model(x), y).backward()
        opt.second_step(zero_grad=True)
    return model


def _run(snippet: str, ns: dict) -> nn.Module:
    ns.update(model=_model(), data=_data(), loss_fn=_loss_fn)
    exec(compile(snippet, "<README snippet>", "exec"), ns)
    return ns["model"]


def _imports(snippets: list[str]) -> dict:
    """The namespace after the blocks that import (the first: SAM; the fourth: train_step)."""
    ns: dict = {}
    _run(snippets[0], ns)
    _run(snippets[3], ns)
    return ns


def _assert_params(actual: nn.Module, expected: nn.Module, tol: float = 1e-6) -> None:
    for a, b in zip(actual.parameters(), expected.parameters()):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def snippets() -> list[str]:
    blocks = _snippets()
    assert len(blocks) == 9  # three APIs, train_step, accumulation, AMP, DDP, compile, scheduler
    return blocks


def test_the_three_apis_and_train_step_match_davda54(snippets):
    expected = _davda54_reference()
    ns: dict = {}
    for block in snippets[:4]:
        _assert_params(_run(block, ns), expected)


def test_gradient_accumulation_snippet_equals_the_whole_batch(snippets):
    ns = _imports(snippets)
    _assert_params(_run(snippets[4], ns), _davda54_reference(), tol=1e-5)


def test_amp_snippet_runs_and_stays_near_fp32(snippets):
    ns = _imports(snippets)
    model = _run(snippets[5], ns)
    assert not ns["result"].skipped
    # float16 autocast: the result is the fp32 one up to half-precision rounding
    _assert_params(model, _davda54_reference(), tol=2e-2)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), _model().parameters()))


def test_ddp_snippet_in_a_one_process_group_equals_the_plain_step(snippets, tmp_path):
    ns = _imports(snippets)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        _run(snippets[6], ns)
    finally:
        dist.destroy_process_group()
    _assert_params(ns["ddp_model"].module, _davda54_reference())


def test_compile_snippet_equals_eager(snippets, monkeypatch):
    # aot_eager instead of inductor: the same graph capture, no C++ build (seconds, not a minute)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    ns = _imports(snippets)
    _run(snippets[7], ns)
    torch._dynamo.reset()
    _assert_params(ns["compiled"], _davda54_reference())


def test_scheduler_snippet_follows_the_cosine_closed_form(snippets):
    ns = _imports(snippets)
    model = _run(snippets[8], ns)
    # CosineAnnealingLR after 3 steps of T_max=10: lr = 0.1 * (1 + cos(pi * 3 / 10)) / 2
    lr = ns["opt"].base_optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.1 * (1 + math.cos(math.pi * 3 / 10)) / 2, rel=1e-12)
    # the steps used the decayed rates: davda54's loop with the same per-step lr
    ref = _model()
    opt = DavdaSAM(ref.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for t, (x, y) in enumerate(_data()):
        opt.param_groups[0]["lr"] = 0.1 * (1 + math.cos(math.pi * t / 10)) / 2
        F.cross_entropy(ref(x), y).backward()
        opt.first_step(zero_grad=True)
        F.cross_entropy(ref(x), y).backward()
        opt.second_step(zero_grad=True)
    _assert_params(model, ref)
