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
``first_step`` never writes ``p.grad`` (ASAM's |w| g and w^2 g live in the spare buffer on the
CPU and in the parameters themselves, before w + e is formed, on accelerators).

Three ways to call it (README "Using samcore in your own loop"):
- ``first_step`` / ``second_step`` around the caller's two forward-backward passes;
- ``step(closure)`` as davda54/sam and pytorch_optimizer mean it: the caller has already run
  the forward-backward pass at w; the closure is evaluated once, at w + e;
- ``two_pass_step(closure)``: both passes from one closure, with the same random numbers
  (dropout masks) in both by default.

Under ``torch.compile`` the optimizer's methods run eagerly (a graph break): they swap
parameter storages and keep Python state between calls, which Dynamo does not trace
faithfully (issue 18: it dropped ``_climbed`` and aliased a saved ``p.data`` with the swapped
buffer, silently leaving the parameters at w + e). The model's passes still compile.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from samcore.rng import capture_rng, replay_rng

__all__ = ["SAM"]

# Graph-break the optimizer's stateful methods under torch.compile (see the module docstring).
# torch.optim's own lazy form of torch.compiler.disable: Dynamo is imported at the first call
# (torch.optim.Optimizer has imported it by then anyway), not at ``import samcore``.
_eager = getattr(torch, "_disable_dynamo", torch.compiler.disable)


class SAM(torch.optim.Optimizer):
    """SAM wrapper: ``SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)``.

    The base optimizer is built inside on the same ``param_groups``, so LR schedulers and
    ``param_group`` edits given the SAM object reach the base optimizer.
    """

    # False runs the accelerators' in-place climb on the CPU too (the tests check both paths).
    _swap_on_cpu = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        *,
        norm_eps: float = 1e-12,
        **base_kwargs: Any,
    ) -> None:
        if not isinstance(base_optimizer, type) or not issubclass(
            base_optimizer, torch.optim.Optimizer
        ):
            raise TypeError(
                f"base_optimizer must be a torch.optim.Optimizer class, got {base_optimizer!r}"
            )
        _check_rho(rho)
        if norm_eps <= 0:
            raise ValueError(f"norm_eps must be > 0, got {norm_eps}")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, **base_kwargs))
        for group in self.param_groups:
            _check_rho(group["rho"])
        # rho / (||g|| + norm_eps). Not called ``eps``: that keyword is the base optimizer's
        # (Adam's), as in davda54/sam, which forwards every keyword but rho and adaptive.
        self.norm_eps = norm_eps
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

    @_eager
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
    @_eager
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> torch.Tensor:
        """Climb from w to w + e. Returns ||g|| (a tensor; no host sync on accelerators).

        On the CPU the parameters point at a buffer holding w + e until ``second_step`` /
        ``unperturb`` (their ``.data`` is swapped); hold the Parameter objects, not their
        storages, across the two steps. ``p.grad`` is left as it was (g), for adaptive groups
        too; ``zero_grad=True`` drops it before the second backward pass.
        """
        if self._climbed:
            raise RuntimeError("first_step called twice without second_step/unperturb")
        self._climbed = True
        # One list of (group, params, grads, buffers, on_cpu) for the norm and the climb.
        work = []
        for group in self.param_groups:
            params = self._params_with_grad(group)
            if params:
                grads = [p.grad for p in params]
                on_cpu = self._swap_on_cpu and grads[0].device.type == "cpu"
                work.append((group, params, grads, self._buffers(params), on_cpu))
        norms: list[torch.Tensor] = []
        for group, params, grads, buffers, on_cpu in work:
            if not group["adaptive"]:
                norms.extend(torch._foreach_norm(grads))
            elif on_cpu:
                for p, g, b in zip(params, grads, buffers):
                    torch.mul(p, g, out=b)  # w g in the spare buffer: p.grad stays g
                norms.extend(torch._foreach_norm(buffers))
            else:
                torch._foreach_copy_(buffers, params)  # w saved; the parameters are scratch
                torch._foreach_mul_(params, grads)  # w g
                norms.extend(torch._foreach_norm(params))
        norm = self._global_norm(norms)
        norm_value: float | None = None  # read once, on the CPU only
        for group, params, grads, buffers, on_cpu in work:
            if on_cpu:
                if norm_value is None:
                    norm_value = norm.item()  # a float is free to read on the CPU
                self._climb_swapping(group, params, grads, buffers, norm_value)
            else:
                self._climb_in_place(group, params, grads, buffers, norm)
        if zero_grad:
            self._drop_grads(work)
        return norm

    def _climb_swapping(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: list[torch.Tensor],
        norm: float,
    ) -> None:
        """CPU: memory traffic is the cost. Write w + e into the buffer in one pass and swap
        storages: the model computes at w + e while w sits untouched in the parameter's own
        storage, and the restore is a swap back (no copy, exact). One call per parameter."""
        s = group["rho"] / (norm + self.norm_eps)
        if group["adaptive"]:  # the buffer holds w g: w + s w (w g) = w + s w^2 g
            for p, b in zip(params, buffers):
                torch.addcmul(p, p, b, value=s, out=b)
        else:
            for p, g, b in zip(params, grads, buffers):
                torch.add(p, g, alpha=s, out=b)
        self._swap_in(params, buffers)

    def _climb_in_place(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        buffers: list[torch.Tensor],
        norm: torch.Tensor,
    ) -> None:
        """Accelerators: fused foreach kernels, the scale stays on the device (no host sync),
        storages stay put (cuDNN's flattened RNN weights, CUDA graphs). The buffers hold w;
        e is formed in the parameters themselves, so ``p.grad`` is never written."""
        scale = group["rho"] / (norm.to(grads[0].device) + self.norm_eps)
        if group["adaptive"]:  # the parameters hold w g, the buffers w
            torch._foreach_mul_(params, buffers)  # w^2 g
        else:
            torch._foreach_copy_(buffers, params)
            torch._foreach_copy_(params, grads)
        torch._foreach_mul_(params, scale)  # e
        torch._foreach_add_(params, buffers)  # w + e
        self._perturbed.append((params, buffers, False))

    def _swap_in(self, params: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
        """Point the parameters at ``buffers`` (holding w + e); w stays in their own storages
        until ``unperturb`` swaps back."""
        originals = [p.data for p in params]
        for p, b in zip(params, buffers):
            p.data = b
        self._perturbed.append((params, originals, True))

    @staticmethod
    def _drop_grads(work: list[tuple[Any, ...]]) -> None:
        """What zero_grad(set_to_none=True) does, without its profiler hook (small models
        notice)."""
        for _, params, *_ in work:
            for p in params:
                p.grad = None

    @_eager
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

    @_eager
    @torch.no_grad()
    def perturbation_norm(self) -> torch.Tensor:
        """||(w + e) - w||, valid between ``first_step`` and ``second_step`` (for logging)."""
        sq = [
            torch.linalg.vector_norm(torch.stack(torch._foreach_norm(torch._foreach_sub(p, s))))
            for p, s, _ in self._perturbed
        ]
        return torch.linalg.vector_norm(torch.stack(sq)) if sq else torch.zeros(())

    @_eager
    @torch.no_grad()
    def second_step(
        self, zero_grad: bool = False, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """Back to w, then the base optimizer's step with the gradient taken at w + e.

        scaler: a ``torch.amp.GradScaler`` whose scaled second pass filled the gradients:
            they are unscaled with the base optimizer's own scaler state (so this pass is
            inf-checked apart from the first) and ``scaler.step`` skips the update if it
            overflowed; the caller calls ``scaler.update()``."""
        if not self._climbed:
            raise RuntimeError("second_step called without first_step")
        if scaler is not None:
            scaler.unscale_(self.base_optimizer)
        self.unperturb()
        self.base_step(scaler)
        if zero_grad:
            self.zero_grad()

    def base_step(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """The base optimizer's step with the gradients in ``.grad`` as they are, at the
        current weights (no ascent): late-phase SAM's plain steps, m-sharpness's update with
        the averaged perturbed gradients, and ``second_step``'s update. Through ``scaler``
        when given (``scaler.step``); LR schedulers see it as this optimizer's step."""
        if scaler is None:
            self.base_optimizer.step()
        else:
            scaler.step(self.base_optimizer)
        self._opt_called = True  # tells torch LR schedulers a step happened (two-step API)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """SAM step as davda54/sam and pytorch_optimizer define it: the caller has already run
        the forward-backward pass at w (``loss.backward()``); this climbs to w + e (dropping
        that gradient), evaluates ``closure`` (forward, backward, return the loss) once there,
        and updates w. Returns the closure's loss (at w + e).

        The closure draws fresh dropout masks (SAM never saw the random state your pass at w
        started from), as with davda54/sam. For both passes from one closure with the same
        masks, use ``two_pass_step`` (or ``train_step``).
        """
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that runs forward and backward at w + e "
                "(after your own loss.backward() at w); or call first_step/second_step"
            )
        if not any(p.grad is not None for g in self.param_groups for p in g["params"]):
            raise RuntimeError(
                "SAM.step(closure) expects the gradient at w already computed (call "
                "loss.backward() first, as with davda54/sam); two_pass_step(closure) runs both"
            )
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step()
        return loss

    def two_pass_step(
        self, closure: Callable[[], torch.Tensor], same_dropout_masks: bool = True
    ) -> torch.Tensor:
        """A whole SAM step from one closure (forward, backward, return the loss): zero the
        gradients, evaluate it at w, climb, evaluate it at w + e, update. Returns the loss at w.

        same_dropout_masks: replay the random state of the pass at w in the pass at w + e
            (the CPU generator and the parameters' accelerator's), so both passes see one
            stochastic loss; afterwards the generators continue from where the pass at w
            left them. False draws fresh masks for the second pass.
        """
        device = next(p.device for g in self.param_groups for p in g["params"])
        rng = capture_rng(device) if same_dropout_masks else None
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        with replay_rng(rng), torch.enable_grad():
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
        """Load ``state_dict()`` output. A davda54/sam state_dict (its per-parameter state is
        only ``old_p``, the w it saved during a step) is converted with a warning: ``old_p``
        is dropped, and the base optimizer starts without state (davda54 never saved it)."""
        state = state_dict.get("state", {})
        if any(isinstance(s, dict) and "old_p" in s for s in state.values()):
            warnings.warn(
                "loading a davda54/sam state_dict: its 'old_p' entries are dropped and the "
                "base optimizer's state (momentum, Adam moments) starts empty, since davda54 "
                "does not save it",
                stacklevel=2,
            )
            kept = {k: {n: v for n, v in s.items() if n != "old_p"} for k, s in state.items()}
            state_dict = {**state_dict, "state": {k: s for k, s in kept.items() if s}}
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
