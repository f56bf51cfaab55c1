"""SAM under torch.compile gives the eager result (issue 18, finding 2).

Two failure modes were seen: a compiled step function calling first_step/second_step raised
"first_step called twice" at step 2 (Dynamo dropped the optimizer's attribute writes), and a
compiled region holding only first_step left the parameters at w + e (a saved ``p.data``
aliased the swapped buffer). SAM's methods now run eagerly inside compiled code.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from samcore import SAM

BACKENDS = [
    "aot_eager",
    # Inductor compiles C++ kernels on the CPU: tens of seconds on a shared machine.
    pytest.param("inductor", marks=pytest.mark.slow),
]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _setup(adaptive=False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    pair = [copy.deepcopy(model) for _ in range(2)]
    opts = [
        SAM(m.parameters(), torch.optim.SGD, rho=0.1, adaptive=adaptive, lr=0.1, momentum=0.9)
        for m in pair
    ]
    return pair, opts, x, y


def _sam_step(model, opt, x, y):
    F.mse_loss(model(x), y).backward()
    opt.first_step(zero_grad=True)
    F.mse_loss(model(x), y).backward()
    opt.second_step(zero_grad=True)


def _assert_same(eager: nn.Module, compiled: nn.Module) -> None:
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("adaptive", [False, True])
def test_compiled_step_function_equals_eager(backend, adaptive):
    (eager, compiled), (opt_e, opt_c), x, y = _setup(adaptive)
    step = torch.compile(_sam_step, backend=backend)
    for _ in range(3):  # raised "first_step called twice" at step 2
        _sam_step(eager, opt_e, x, y)
        step(compiled, opt_c, x, y)
    _assert_same(eager, compiled)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_first_step_alone_equals_eager(backend):
    (eager, compiled), (opt_e, opt_c), x, y = _setup()
    first_step = torch.compile(lambda opt: opt.first_step(zero_grad=True), backend=backend)
    for _ in range(3):  # silently left the parameters at w + e
        _sam_step(eager, opt_e, x, y)
        F.mse_loss(compiled(x), y).backward()
        first_step(opt_c)
        F.mse_loss(compiled(x), y).backward()
        opt_c.second_step(zero_grad=True)
    _assert_same(eager, compiled)


def test_compiled_closure_step_equals_eager():
    """davda54's closure API inside a compiled function (the closure's passes compile)."""
    (eager, compiled), (opt_e, opt_c), x, y = _setup()

    def step(model, opt):
        def closure():
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss

        F.mse_loss(model(x), y).backward()
        opt.step(closure)
        opt.zero_grad()

    compiled_step = torch.compile(step, backend="aot_eager")
    for _ in range(3):
        step(eager, opt_e)
        compiled_step(compiled, opt_c)
    _assert_same(eager, compiled)
