"""Sharpness-aware minimization (Foret et al., 2021) around any torch optimizer.

One SAM step at parameters w with loss L:
    g   = grad L(w)
    e   = rho * g / (||g||_2 + eps)                          (standard SAM)
    e   = rho * |w|^2 * g / (|| |w| * g ||_2 + eps)          (adaptive, ASAM; Kwon et al., 2021)
    w  <- base_step(w, grad L(w + e))

The norm is global: one norm over every parameter of every group (the paper's SAM, and
davda54/sam). Per-group ``rho`` and ``adaptive`` are allowed; the norm stays global. Weight
decay, momentum and learning rate are the base optimizer's, applied at w (not at w + e),
because the base optimizer steps after w is restored.

No allocation per step and no clone: one buffer per parameter, allocated once, and
``second_step`` restores w bit for bit (w + e - e would not). On accelerators the climb is
fused ``torch._foreach_*`` kernels with the scale rho/||g|| kept on the device (no host sync):
w is copied into the buffer, then w += e in place, and copied back. On the CPU, where these
memory passes are all SAM adds beyond its second forward-backward (profiled on the MNIST MLP
at 10x: save and restore copies were 6 ms of a 22 ms overhead), w + e is written into the
buffer in one pass and the parameters' storages are swapped to it and back, so w is never
copied (norm: read g; climb: read w and g, write the buffer; restore: a pointer swap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """SAM wrapper: ``SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)``.

    The base optimizer is built inside on the same ``param_groups``, so LR schedulers and
    ``param_group`` edits given the SAM object reach the base optimizer.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eps: float = 1e-12,
        **base_kwargs: Any,
    ) -> None:
        if not isinstance(base_optimizer, type) or not issubclass(
            base_optimizer, torch.optim.Optimizer
        ):
            raise TypeError(
                f"base_optimizer must be a torch.optim.Optimizer class, got {base_optimizer!r}"
            )
        _check_rho(rho)
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        for group in self.param_groups:
            _check_rho(group["rho"])
        self.eps = eps
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        # Share one list of groups: schedulers and users edit either object's groups.
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        # One buffer per parameter, allocated once: w (accelerators) or w + e (CPU) in it.
        self._saved_w: dict[torch.Tensor, torch.Tensor] = {}
        # (params, tensors holding w, whether storages were swapped) per group while at w + e
        self._perturbed: list[tuple[list[torch.Tensor], list[torch.Tensor], bool]] = []
        self._climbed = False

    # ------------------------------------------------------------------ helpers
    def _params_with_grad(self, group: dict[str, Any]) -> list[torch.Tensor]:
        return [p for p in group["params"] if p.grad is not None]

    def _buffers(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """One spare tensor per parameter (w or w + e lives there while perturbed), allocated
        once and reused."""
        buffers = [self._saved_w.get(p) for p in params]
        if any(b is None for b in buffers):
            for p in params:
                if p not in self._saved_w:
                    self._saved_w[p] = torch.empty_like(p)
            buffers = [self._saved_w[p] for p in params]
        return buffers

    @staticmethod
    def _global_norm(norms: list[torch.Tensor]) -> torch.Tensor:
        if not norms:
            return torch.zeros(())
        device = norms[0].device
        if any(n.device != device for n in norms):  # groups on several devices
            norms = [n.to(device) for n in norms]
        stacked = torch.stack(norms)
        # Half-precision norms are accumulated in float32; float64 models keep float64.
        return torch.linalg.vector_norm(
            stacked.to(torch.promote_types(stacked.dtype, torch.float32))
        )

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """Global 2-norm of the ascent direction: ||g|| (or ||w * g|| for adaptive groups)."""
        norms: list[torch.Tensor] = []
        for group in self.param_groups:
            params = self._params_with_grad(group)
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["adaptive"]:
                grads = torch._foreach_mul(grads, params)  # |w| * g has the norm of w * g
            norms.extend(torch._foreach_norm(grads))
        return self._global_norm(norms)

    # ------------------------------------------------------------------ SAM steps
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> torch.Tensor:
        """Climb from w to w + e. Returns ||g|| (a tensor; no host sync on accelerators).

        On the CPU the parameters point at a buffer holding w + e until ``second_step`` /
        ``unperturb`` (their ``.data`` is swapped); hold the Parameter objects, not their
        storages, across the two steps.

        Adaptive groups' gradients are scaled in place (into w^2 * g); call ``zero_grad``
        (or pass ``zero_grad=True``) before the second backward pass.
        """
        if self._climbed:
            raise RuntimeError("first_step called twice without second_step/unperturb")
        self._climbed = True
        # One list of (group, params, grads) for the norm and the climb.
        work = []
        for group in self.param_groups:
            params = self._params_with_grad(group)
            if params:
                work.append((group, params, [p.grad for p in params]))
        norms: list[torch.Tensor] = []
        for group, params, grads in work:
            if group["adaptive"]:
                torch._foreach_mul_(grads, params)  # w * g in place: its norm, no new memory
            norms.extend(torch._foreach_norm(grads))
        norm = self._global_norm(norms)
        norm_value: float | None = None  # read once, on the CPU only
        for group, params, grads in work:
            buffers = self._buffers(params)
            if group["adaptive"]:
                torch._foreach_mul_(grads, params)  # w^2 * g
            if grads[0].device.type == "cpu":
                # CPU: memory traffic is the cost. Write w + e into the buffer in one pass and
                # swap storages: the model computes at w + e while w sits untouched in the
                # parameter's own storage, and the restore is a swap back (no copy, exact).
                # A float is free to read on the CPU. The loop is one call per parameter.
                if norm_value is None:
                    norm_value = norm.item()
                s = group["rho"] / (norm_value + self.eps)
                for p, g, b in zip(params, grads, buffers):
                    torch.add(p, g, alpha=s, out=b)
                self._swap_in(params, buffers)
            else:
                # Accelerators: fused foreach kernels, the scale stays on the device (no host
                # sync), storages stay put (cuDNN's flattened RNN weights, CUDA graphs).
                torch._foreach_copy_(buffers, params)
                scale = group["rho"] / (norm.to(grads[0].device) + self.eps)
                torch._foreach_mul_(grads, scale)
                torch._foreach_add_(params, grads)
                self._perturbed.append((params, buffers, False))
        if zero_grad:
            self._drop_grads(work)
        return norm

    def _swap_in(self, params: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
        """Point the parameters at ``buffers`` (holding w + e); w stays in their own storages
        until ``unperturb`` swaps back."""
        originals = [p.data for p in params]
        for p, b in zip(params, buffers):
            p.data = b
        self._perturbed.append((params, originals, True))

    @staticmethod
    def _drop_grads(work: list[tuple[Any, list[torch.Tensor], Any]]) -> None:
        """What zero_grad(set_to_none=True) does, without its profiler hook (small models
        notice)."""
        for _, params, _ in work:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def unperturb(self) -> None:
        """Return the parameters to w exactly (no optimizer step)."""
        for params, at_w, swapped in self._perturbed:
            if swapped:  # w is in the original storages: point the parameters back at them
                for p, w in zip(params, at_w):
                    p.data = w
            else:
                torch._foreach_copy_(params, at_w)
        self._perturbed = []
        self._climbed = False

    @torch.no_grad()
    def perturbation_norm(self) -> torch.Tensor:
        """||(w + e) - w||, valid between ``first_step`` and ``second_step`` (for logging)."""
        sq = [
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(torch._foreach_sub(p, s))))
            for p, s, _ in self._perturbed
        ]
        return torch.linalg.vector_norm(torch.stack(sq)) if sq else torch.zeros(())

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Back to w, then the base optimizer's step with the gradient taken at w + e."""
        if not self._climbed:
            raise RuntimeError("second_step called without first_step")
        self.unperturb()
        self.base_optimizer.step()
        self._opt_called = True  # tells torch LR schedulers a step happened (two-step API)
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Full SAM step. ``closure`` zeroes grads, runs forward and backward, returns the loss.

        Evaluates the closure at w and at w + e; returns the loss at w.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure (zero_grad, forward, backward, return loss)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state and the shared groups (rho and adaptive included)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        # torch's load_state_dict replaces the group list: share the new one again.
        self.param_groups = self.base_optimizer.param_groups
        for group in self.param_groups:
            _check_rho(group["rho"])

    def __repr__(self) -> str:
        return f"SAM({self.base_optimizer!r})"


def _check_rho(rho: float) -> None:
    if not (isinstance(rho, (int, float)) and rho >= 0 and rho == rho and rho != float("inf")):
        raise ValueError(f"rho must be a finite number >= 0, got {rho!r}")
