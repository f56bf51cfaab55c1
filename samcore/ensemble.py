"""S seeds of one small model trained as one model: ``torch.func`` stacking and ``vmap``.

Each parameter is stacked along a new leading seed dimension (``stack_module_state``); one
vmapped ``functional_call`` runs every seed on its own batch, and the summed per-seed losses
give every seed its own gradient in one backward pass (the seeds share no parameter, so
d(sum_s L_s)/d w_s = dL_s/dw_s). The base optimizers here (SGD, Adam, AdamW, weight decay
included) act element by element with a step count shared by all seeds, so one optimizer on
the stacked tensors is S independent optimizers. SAM's ascent is the one thing that mixes
elements of a parameter: its norm is global *per seed*, so ``EnsembleSAM`` computes S norms,
each over that seed's slice of every parameter, and climbs each seed by its own rho/||g_s||.

Supported models: no batch norm and no dropout (running statistics and random masks would
need per-seed functional state); a workload declares support with
``supports_seed_ensemble``. Training S seeds this way equals S sequential runs up to float
rounding (tests/samcore/test_ensemble.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from samcore.optim import BASE_OPTIMIZERS, base_optimizer_kwargs, decay_param_groups
from samcore.sam import SAM

__all__ = ["SeedEnsemble", "EnsembleSAM", "build_ensemble_optimizer", "stack_batches"]

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class _Bound:
    """A model called with given parameter tensors (what a workload's ``loss`` calls)."""

    def __init__(self, base: nn.Module, params: dict[str, torch.Tensor], buffers: dict) -> None:
        self.base, self.params, self.buffers = base, params, buffers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.base, (self.params, self.buffers), args, kwargs)


class SeedEnsemble(nn.Module):
    """S copies of one architecture; parameter ``i`` has shape (S, *shape of parameter i).

    ``loss_fn(ensemble, stacked_batch)`` with ``ensemble.loss_fn(workload_loss)`` returns the
    sum of the seeds' mean losses (what backward needs) and the per-seed losses and metrics,
    each of shape (S,), in the metrics dict (``seed/loss``, ``seed/<metric>``).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in models[0].modules()):
            raise ValueError("seed ensembles do not support batch norm (per-seed running stats)")
        params, buffers = torch.func.stack_module_state(list(models))
        self.names = list(params)
        self.ndims = [models[0].get_parameter(n).ndim for n in self.names]  # per-seed ndim
        self.stacked = nn.ParameterList([nn.Parameter(params[n]) for n in self.names])
        self.seed_buffers = buffers
        # The architecture without storage: functional_call supplies every tensor.
        self._base = [copy.deepcopy(models[0]).to("meta")]  # a list: not a submodule
        self.num_seeds = len(models)

    def params_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stacked))

    def loss_fn(self, workload_loss: LossFn) -> LossFn:
        def ensemble_loss(
            ens: SeedEnsemble, batch: Any
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            def one_seed(params: dict, buffers: dict, seed_batch: Any) -> tuple[Any, Any]:
                return workload_loss(_Bound(ens._base[0], params, buffers), seed_batch)

            losses, extra = torch.func.vmap(one_seed, randomness="error")(
                ens.params_dict(), ens.seed_buffers, batch
            )  # (S,), {name: (S,)}
            metrics = {"seed/loss": losses.detach()}
            metrics.update({f"seed/{k}": v.detach() for k, v in extra.items()})
            return losses.sum(), metrics

        return ensemble_loss

    @torch.no_grad()
    def load_seed_into(self, seed_index: int, model: nn.Module) -> nn.Module:
        """Copy seed ``seed_index``'s parameters into ``model`` (same architecture)."""
        for name, stacked in zip(self.names, self.stacked):
            model.get_parameter(name).copy_(stacked[seed_index])
        return model


def stack_batches(batches: Sequence[Any]) -> Any:
    """Per-seed batches (tensors, tuples, lists, dicts of tensors) -> one with a seed dim."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(batches))
    if isinstance(first, dict):
        return {k: stack_batches([b[k] for b in batches]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack_batches(parts) for parts in zip(*batches))
    raise TypeError(f"cannot stack batches of {type(first).__name__} for a seed ensemble")


def _per_seed_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(S,) global 2-norms, one per seed, over the seed slices of every (S, ...) tensor."""
    per_param = [torch.linalg.vector_norm(t.flatten(1), dim=1) for t in tensors]  # each (S,)
    stacked = torch.stack(per_param)  # (P, S)
    return torch.linalg.vector_norm(
        stacked.to(torch.promote_types(stacked.dtype, torch.float32)), dim=0
    )


def _seed_view(scale: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return scale.view(-1, *([1] * (t.ndim - 1)))  # (S,) -> (S, 1, ..., 1) against t


class EnsembleSAM(SAM):
    """SAM over stacked seeds: ``e_s = rho * g_s / (||g_s|| + eps)`` with each seed's own
    global norm (or ASAM's ``rho * w_s^2 g_s / ||w_s g_s||``). ``first_step``,
    ``grad_norm`` and ``perturbation_norm`` return (S,) tensors."""

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        grads = []
        for group in self.param_groups:
            params = self._params_with_grad(group)
            g = [p.grad for p in params]
            grads += torch._foreach_mul(g, params) if group["adaptive"] and g else g
        return _per_seed_norm(grads)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> torch.Tensor:
        if self._climbed:
            raise RuntimeError("first_step called twice without second_step/unperturb")
        self._climbed = True
        work = [(g, self._params_with_grad(g)) for g in self.param_groups]
        work = [(g, ps, [p.grad for p in ps]) for g, ps in work if ps]
        for group, params, grads in work:
            if group["adaptive"]:
                torch._foreach_mul_(grads, params)  # w * g
        norm = _per_seed_norm([g for _, _, grads in work for g in grads])  # (S,)
        for group, params, grads in work:
            saved = []
            for p in params:  # allocated once per parameter, reused after
                if p not in self._saved_w:
                    self._saved_w[p] = torch.empty_like(p)
                saved.append(self._saved_w[p])
            torch._foreach_copy_(saved, params)
            if group["adaptive"]:
                torch._foreach_mul_(grads, params)  # w^2 * g
            scale = group["rho"] / (norm + self.eps)  # (S,)
            torch._foreach_addcmul_(params, grads, [_seed_view(scale, p) for p in params])
            self._perturbed.append((params, saved, False))  # copied, not swapped
        if zero_grad:
            self.zero_grad()
        return norm

    @torch.no_grad()
    def perturbation_norm(self) -> torch.Tensor:
        diffs = [d for p, s, _ in self._perturbed for d in torch._foreach_sub(p, s)]
        return _per_seed_norm(diffs)


def build_ensemble_optimizer(
    ensemble: SeedEnsemble,
    name: str,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    sam: bool = False,
    rho: float = 0.05,
    adaptive: bool = False,
    decay_norm_and_bias: bool = True,
) -> torch.optim.Optimizer:
    """``samcore.build_optimizer`` for a ``SeedEnsemble``: the same groups (decay split by
    the per-seed ndim, in the same order) and kwargs, with ``EnsembleSAM`` for SAM."""
    kwargs = base_optimizer_kwargs(name, lr, weight_decay, momentum, betas, eps)
    params = list(zip(ensemble.stacked, ensemble.ndims))
    groups = decay_param_groups(params, weight_decay, decay_norm_and_bias)
    if sam:
        return EnsembleSAM(groups, BASE_OPTIMIZERS[name], rho=rho, adaptive=adaptive, **kwargs)
    return BASE_OPTIMIZERS[name](groups, **kwargs)
