"""S seeds of one small model trained as one model: ``torch.func`` stacking and ``vmap``.

Each parameter is stacked along a new leading seed dimension (``stack_module_state``); one
vmapped ``functional_call`` runs every seed on its own batch (for MLPs, a stacked forward of
batched matrix products, samcore/stacked_forward.py, with only the loss vmapped), and the
summed per-seed losses give every seed its own gradient in one backward pass (the seeds
share no parameter, so d(sum_s L_s)/d w_s = dL_s/dw_s). The base optimizers here (SGD, Adam,
AdamW, weight decay included) act element by element with a step count shared by all seeds,
so one optimizer on the stacked tensors is S independent optimizers. SAM's ascent is the one
thing that mixes elements of a parameter: its norm is global *per seed*, so ``EnsembleSAM``
computes S norms, each over that seed's slice of every parameter, and climbs each seed by its
own rho/||g_s||.

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
from samcore.stacked_forward import stacked_forward_plan

try:  # functorch's vmap levels, for _vmap_over_seeds (torch is pinned; see pyproject.toml)
    from torch._C import _functorch
    from torch._functorch.vmap import lazy_load_decompositions
except ImportError:  # pragma: no cover
    _functorch = None

__all__ = ["SeedEnsemble", "EnsembleSAM", "build_ensemble_optimizer", "stack_batches"]

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class _NotTheInput(Exception):
    """The loss called the model with something other than the recorded batch leaf."""


class _Bound:
    """A model called with given parameter tensors (what a workload's ``loss`` calls).

    With ``seed_leaves`` it also records which leaf of the seed's batch each call got as its
    one positional argument (None for anything else), so the ensemble can learn which part
    of a batch is the model's input."""

    def __init__(
        self,
        base: nn.Module,
        params: dict[str, torch.Tensor],
        buffers: dict,
        seed_leaves: list | None = None,
    ) -> None:
        self.base, self.params, self.buffers = base, params, buffers
        self.seed_leaves, self.calls = seed_leaves, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.seed_leaves is not None:
            found = (
                [i for i, leaf in enumerate(self.seed_leaves) if leaf is args[0]] if args else []
            )
            plain = len(args) == 1 and not kwargs and len(found) == 1
            self.calls.append(found[0] if plain and not _autocasting(args[0]) else None)
        return torch.func.functional_call(self.base, (self.params, self.buffers), args, kwargs)


class _Output:
    """Stands in for the model inside the vmapped loss when the stacked forward already ran:
    returns this seed's slice of its output, for the recorded input only."""

    def __init__(self, out: torch.Tensor, expected_input: torch.Tensor) -> None:
        self.out, self.expected_input = out, expected_input

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs or len(args) != 1 or args[0] is not self.expected_input or _autocasting(args[0]):
            raise _NotTheInput
        return self.out


def _autocasting(x: Any) -> bool:
    # Under autocast the model's output dtype differs from the stacked forward's (fp32).
    return isinstance(x, torch.Tensor) and torch.is_autocast_enabled(x.device.type)


def _map_tensors(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    """``fn`` on every tensor of nested tuples, lists and dicts (the batch and loss shapes)."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _map_tensors(fn, v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tensors(fn, v) for v in tree)
    raise TypeError(f"expected tensors in tuples, lists or dicts, got {type(tree).__name__}")


def _vmap_over_seeds(fn: Callable[..., Any], num_seeds: int, *args: Any) -> Any:
    """``torch.func.vmap(fn, randomness="error")(*args)`` with every tensor of ``args`` and of
    the output batched on dim 0: the same functorch levels vmap enters, without its generic
    pytree bookkeeping. On the synthetic workload's loss that bookkeeping was 160 of vmap's
    220 us per call, a tenth of a whole ensemble step (tests/samcore/test_stacked_forward.py
    checks the two agree)."""
    if _functorch is None:  # a torch without these internals: the public path
        return torch.func.vmap(fn, randomness="error")(*args)
    lazy_load_decompositions()  # what torch.func.vmap does first
    level = _functorch._vmap_increment_nesting(num_seeds, "error")
    try:
        out = fn(*_map_tensors(lambda t: _functorch._add_batch_dim(t, 0, level), args))
        return _map_tensors(lambda t: _functorch._remove_batch_dim(t, level, num_seeds, 0), out)
    finally:
        _functorch._vmap_decrement_nesting()


def _leaves(batch: Any) -> list[torch.Tensor]:
    """A batch's tensors in the order ``stack_batches`` walks them."""
    leaves: list[torch.Tensor] = []
    _map_tensors(leaves.append, batch)
    return leaves


class SeedEnsemble(nn.Module):
    """S copies of one architecture; parameter ``i`` has shape (S, *shape of parameter i).

    ``loss_fn(ensemble, stacked_batch)`` with ``ensemble.loss_fn(workload_loss)`` returns the
    sum of the seeds' mean losses (what backward needs) and the per-seed losses and metrics,
    each of shape (S,), in the metrics dict (``seed/loss``, ``seed/<metric>``).

    Two ways to the same numbers. In general the workload's loss runs under ``vmap`` with the
    model as a ``functional_call``. For MLPs (``samcore.stacked_forward``) the first call
    also records which leaf of the batch the loss passes to the model; later calls run the
    stacked forward on that leaf with batched matrix products outside ``vmap`` and vmap only
    the loss over its output, which is what makes the ensemble pay on small models. If a
    later call hands the model anything else, that call and all later ones take the general
    path.
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
        self.stacked_forward = None if buffers else stacked_forward_plan(models[0])
        self._params_dict: dict[str, torch.Tensor] | None = None

    def params_dict(self) -> dict[str, torch.Tensor]:
        # Iterating a ParameterList costs ~40 us on this CPU, a few % of a small step; the
        # Parameter objects never change (``.to`` and ``load_state_dict`` update them in place).
        if self._params_dict is None:
            self._params_dict = dict(zip(self.names, self.stacked))
        return self._params_dict

    def loss_fn(self, workload_loss: LossFn) -> LossFn:
        # "learn" (first call: general path, recording the model's input leaf), then
        # "stacked" if one leaf was always the input, else "general" for good.
        mode = "learn" if self.stacked_forward is not None else "general"
        input_leaf = -1

        def general(ens: SeedEnsemble, batch: Any) -> tuple[Any, Any]:
            nonlocal mode, input_leaf
            bound: list[_Bound] = []

            def one_seed(params: dict, buffers: dict, seed_batch: Any) -> tuple[Any, Any]:
                leaves = _leaves(seed_batch) if mode == "learn" else None
                bound.append(_Bound(ens._base[0], params, buffers, leaves))
                return workload_loss(bound[-1], seed_batch)

            out = torch.func.vmap(one_seed, randomness="error")(
                ens.params_dict(), ens.seed_buffers, batch
            )
            if mode == "learn":
                calls = [i for b in bound for i in b.calls]
                found = bool(calls) and None not in calls and len(set(calls)) == 1
                mode, input_leaf = ("stacked", calls[0]) if found else ("general", -1)
            return out

        def stacked(ens: SeedEnsemble, batch: Any) -> tuple[Any, Any]:
            out = ens.stacked_forward(ens.params_dict(), _leaves(batch)[input_leaf])

            def one_seed(out_s: torch.Tensor, seed_batch: Any) -> tuple[Any, Any]:
                return workload_loss(_Output(out_s, _leaves(seed_batch)[input_leaf]), seed_batch)

            return _vmap_over_seeds(one_seed, ens.num_seeds, out, batch)

        def ensemble_loss(
            ens: SeedEnsemble, batch: Any
        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            nonlocal mode
            result = None
            if mode == "stacked":
                try:
                    result = stacked(ens, batch)
                except _NotTheInput:  # this loss feeds the model something else now
                    mode = "general"
            losses, extra = result if result is not None else general(ens, batch)  # (S,), {k: (S,)}
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
        # ASAM's w g in new tensors: p.grad stays g, as SAM.first_step leaves it
        scaled = [
            torch._foreach_mul(grads, params) if group["adaptive"] else grads
            for group, params, grads in work
        ]
        norm = _per_seed_norm([t for ts in scaled for t in ts])  # (S,)
        for (group, params, grads), directions in zip(work, scaled):
            buffers = self._buffers(params)
            if group["adaptive"]:
                torch._foreach_mul_(directions, params)  # w^2 g
            scale = group["rho"] / (norm + self.norm_eps)  # (S,)
            seed_scales = [_seed_view(scale, p) for p in params]
            if grads[0].device.type == "cpu":  # as SAM: w + e in one pass, storages swapped
                for p, d, s, b in zip(params, directions, seed_scales, buffers):
                    torch.addcmul(p, d, s, out=b)
                self._swap_in(params, buffers)
            else:
                torch._foreach_copy_(buffers, params)
                torch._foreach_addcmul_(params, directions, seed_scales)
                self._perturbed.append((params, buffers, False))
        if zero_grad:
            self._drop_grads(work)
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
