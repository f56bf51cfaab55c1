"""One optimisation step, base or SAM, shared by every supervised workload.

Handles what a correct SAM step needs beyond the optimizer itself:
- batch-norm running statistics come from the clean pass only (``frozen_bn_stats``);
- both passes draw the same dropout masks (the random state of the first pass is replayed in
  the second, ``samcore.rng``), as JAX SAM code does with one dropout key per step;
- gradient accumulation over micro-batches (both passes see the full batch's gradient);
- m-sharpness: one ascent per chunk of m examples, gradients at the chunk's own w + e_k averaged;
- ``torch.amp`` GradScaler: unscale before the norm; inf/nan in either pass skips the step;
- DistributedDataParallel: both passes all-reduced (exact, GPU-count-independent SAM), or
  ``local_ascent=True`` for the official code's per-device ascent (first pass under no_sync).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from samcore.rng import capture_rng, replay_rng
from samcore.sam import SAM

__all__ = ["frozen_bn_stats", "split_batch", "batch_size_of", "StepResult", "train_step"]

LossFn = Callable[[nn.Module, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]


# model -> its batch-norm modules. Scanning ``model.modules()`` costs ~0.1-0.3 ms on a
# ResNet-18 (about 1% of a GPU step); models are built once and keep their module tree, so
# the scan is done once per model. A model whose tree changes: ``_BN_MODULES.pop(model)``.
_BN_MODULES: weakref.WeakKeyDictionary[nn.Module, list[nn.Module]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Inside, batch norm in train mode still normalises by batch statistics but leaves its
    running mean/var and ``num_batches_tracked`` untouched (SAM's second pass)."""
    if model not in _BN_MODULES:
        _BN_MODULES[model] = [
            m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
    bns = [m for m in _BN_MODULES[model] if m.training and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False  # forward then passes no running buffers to F.batch_norm
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor in a (nested) batch."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        return batch_size_of(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return batch_size_of(batch[0])
    raise TypeError(f"cannot find the batch size of {type(batch).__name__}; give split_batch")


def split_batch(batch: Any, chunk_size: int) -> list[tuple[Any, float]]:
    """Split a tensor / tuple / dict batch along dim 0 into chunks of ``chunk_size``.

    Returns (chunk, weight) pairs; weights are chunk fractions of the batch, so weighted
    chunk-mean losses add up to the batch-mean loss even when the last chunk is short.
    """
    n = batch_size_of(batch)
    starts = range(0, n, chunk_size)

    def take(obj: Any, s: int) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj[s : s + chunk_size]
        if isinstance(obj, dict):
            return {k: take(v, s) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(take(v, s) for v in obj)
        raise TypeError(f"cannot split a batch holding {type(obj).__name__}; give split_batch")

    return [(take(batch, s), min(chunk_size, n - s) / n) for s in starts]


@dataclass
class StepResult:
    """What one step measured. Tensors stay on the device (no host sync) until read."""

    loss: torch.Tensor  # batch-mean loss at w (the first pass)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    grad_norm: torch.Tensor | None = None  # ||g|| at w (SAM only)
    perturbation_norm: torch.Tensor | None = None  # ||e|| (SAM only, when measured)
    skipped: torch.Tensor | bool = False  # GradScaler found inf/nan: no update was made


def _ddp_no_sync(model: nn.Module, skip_sync: bool) -> contextlib.AbstractContextManager:
    if skip_sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _backward_chunks(
    model: nn.Module,
    loss_fn: LossFn,
    chunks: Sequence[tuple[Any, float]],
    scaler: torch.amp.GradScaler | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
    sync_last: bool,
    record: bool = True,
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Accumulate d(sum_k w_k loss_k)/dparams into .grad; DDP syncs only the last chunk.
    ``record=False`` (SAM's second pass, whose values are not reported) skips summing the
    loss and metrics: on small models those few ops are a visible part of the step."""
    total: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = {}
    for i, (chunk, weight) in enumerate(chunks):
        last = i == len(chunks) - 1
        with _ddp_no_sync(model, skip_sync=not (last and sync_last)):
            with autocast():
                loss, extra = loss_fn(model, chunk)
            weighted = loss if weight == 1.0 else loss * weight  # one chunk: no extra op
            (scaler.scale(weighted) if scaler is not None else weighted).backward()
        if not record:
            continue
        part = weighted.detach().float()
        total = part if total is None else total + part
        for k, v in extra.items():  # one chunk: no ops beyond detach (small models notice)
            v = v.detach().float() if weight == 1.0 else v.detach().float() * weight
            metrics[k] = metrics[k] + v if k in metrics else v
    return total, metrics


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batch: Any,
    *,
    micro_batch_size: int | None = None,
    m_sharpness: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
    local_ascent: bool = False,
    measure_perturbation: bool = False,
    split: Callable[[Any, int], list[tuple[Any, float]]] | None = None,
    ascent: bool = True,
    same_dropout_masks: bool = True,
) -> StepResult:
    """One base or SAM step on ``batch``. ``loss_fn(model, batch) -> (mean loss, metrics)``.

    micro_batch_size: accumulate gradients over chunks of this size (both SAM passes).
    m_sharpness: SAM ascent per chunk of m examples (Foret et al.'s m-sharpness); the
        update uses the mean of the chunks' perturbed gradients.
    local_ascent: under DDP, compute the ascent from this rank's gradient only (the official
        code's per-device SAM); default False all-reduces the first pass too.
    split: ``split(batch, size) -> [(chunk, weight)]`` with weights summing to 1 such that
        sum_k weight_k * loss(chunk_k) = loss(batch); ``split_batch`` (dim 0 of tensors,
        weights = chunk fractions) by default, a workload's own for other batch types.
    ascent: False makes a SAM optimizer take its base optimizer's plain step (one pass), the
        same optimizer state carried on (late-phase SAM switches this per step).
    same_dropout_masks: SAM's second pass replays the random state the first pass started
        from (CPU generator and the model's accelerator's), so dropout draws the same masks at
        w + e as at w; afterwards the generators continue from where the first pass left them
        (a SAM step advances them by one pass). False draws fresh masks in the second pass.
    """
    split = split or split_batch
    autocast = _autocast(model, autocast_dtype)
    chunks = _micro_batches(batch, micro_batch_size, split)
    is_sam = isinstance(optimizer, SAM) and ascent
    optimizer.zero_grad()
    if is_sam and m_sharpness:
        m_chunks = split(batch, m_sharpness)
        if len(m_chunks) > 1:
            if hasattr(model, "no_sync"):  # DDP
                raise ValueError(
                    "m-sharpness with m below the local batch is not supported under DDP"
                )
            return _m_sharpness_step(
                model, optimizer, loss_fn, m_chunks, scaler, autocast, same_dropout_masks
            )
    if not is_sam:
        return _plain_step(model, optimizer, loss_fn, chunks, scaler, autocast)
    return _sam_step(
        model,
        optimizer,
        loss_fn,
        chunks,
        scaler,
        autocast,
        local_ascent=local_ascent,
        measure_perturbation=measure_perturbation,
        same_dropout_masks=same_dropout_masks,
    )


def _autocast(
    model: nn.Module, dtype: torch.dtype | None
) -> Callable[[], contextlib.AbstractContextManager]:
    """Precision: a factory of autocast contexts on the model's device (none for fp32)."""
    if dtype is None:
        return contextlib.nullcontext
    device_type = next(model.parameters()).device.type
    return functools.partial(torch.autocast, device_type=device_type, dtype=dtype)


def _micro_batches(
    batch: Any, size: int | None, split: Callable[[Any, int], list[tuple[Any, float]]]
) -> list[tuple[Any, float]]:
    """Micro-batches: (chunk, weight) pairs, or the batch itself when it fits in one (no copy)."""
    if not size:
        return [(batch, 1.0)]
    chunks = split(batch, size)
    return [(batch, 1.0)] if len(chunks) == 1 else chunks


def _update(scaler: torch.amp.GradScaler | None, step: Callable[[], None]) -> torch.Tensor | bool:
    """Run the optimizer update ``step``; with a GradScaler, then update the scale and return
    whether the step was skipped (inf/nan found: the scale went down)."""
    if scaler is None:
        step()
        return False
    scale_before = scaler.get_scale()
    step()
    scaler.update()
    return scaler.get_scale() < scale_before


def _plain_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    chunks: Sequence[tuple[Any, float]],
    scaler: torch.amp.GradScaler | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> StepResult:
    """One pass and the base optimizer's update (a base run, or a SAM run without ascent)."""
    loss, metrics = _backward_chunks(model, loss_fn, chunks, scaler, autocast, sync_last=True)
    if isinstance(optimizer, SAM):
        skipped = _update(scaler, lambda: optimizer.base_step(scaler))
    elif scaler is not None:
        skipped = _update(scaler, lambda: scaler.step(optimizer))
    else:
        skipped = _update(None, optimizer.step)
    return StepResult(loss, metrics, skipped=skipped)


def _sam_step(
    model: nn.Module,
    optimizer: SAM,
    loss_fn: LossFn,
    chunks: Sequence[tuple[Any, float]],
    scaler: torch.amp.GradScaler | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
    *,
    local_ascent: bool,
    measure_perturbation: bool,
    same_dropout_masks: bool,
) -> StepResult:
    """SAM's two passes: the gradient at w (all-reduced unless ``local_ascent``), the climb to
    w + e, the gradient there (batch-norm statistics frozen, the same dropout masks), and the
    update at w; under a GradScaler the norm is of the unscaled gradient and an overflow in
    the first pass skips the step."""
    # Micro-batches draw in sequence, so replaying from here gives each chunk its own masks.
    device = next(model.parameters()).device
    rng_at_w = capture_rng(device) if same_dropout_masks else None
    loss, metrics = _backward_chunks(
        model, loss_fn, chunks, scaler, autocast, sync_last=not local_ascent
    )
    if scaler is not None:
        scaler.unscale_(optimizer)  # the norm must be of the true gradient
    grad_norm = optimizer.first_step(zero_grad=True)
    if scaler is not None and not torch.isfinite(grad_norm):  # host sync, as GradScaler.step
        optimizer.unperturb()  # exact restore from the saved weights
        optimizer.zero_grad()
        scaler.update()  # lowers the scale (unscale_ recorded the inf)
        return StepResult(loss, metrics, grad_norm=grad_norm, skipped=True)
    e_norm = optimizer.perturbation_norm() if measure_perturbation else None
    with frozen_bn_stats(model), replay_rng(rng_at_w):
        _backward_chunks(model, loss_fn, chunks, scaler, autocast, sync_last=True, record=False)
    # The base optimizer has its own GradScaler state, so the second pass is unscaled and
    # inf-checked apart from the first; scaler.step skips the update if that pass overflowed.
    skipped = _update(scaler, lambda: optimizer.second_step(scaler=scaler))
    return StepResult(loss, metrics, grad_norm=grad_norm, perturbation_norm=e_norm, skipped=skipped)


def _m_sharpness_step(
    model: nn.Module,
    optimizer: SAM,
    loss_fn: LossFn,
    chunks: Sequence[tuple[Any, float]],
    scaler: torch.amp.GradScaler | None,
    autocast: Callable[[], contextlib.AbstractContextManager],
    same_dropout_masks: bool,
) -> StepResult:
    if scaler is not None:
        raise ValueError("m-sharpness is not supported together with a GradScaler")
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    accumulated = [torch.zeros_like(p) for p in params]
    total_loss = torch.zeros(())
    metrics: dict[str, torch.Tensor] = {}
    norms = []
    device = params[0].device
    for chunk, weight in chunks:
        optimizer.zero_grad()
        rng_at_w = capture_rng(device) if same_dropout_masks else None
        loss, extra = _backward_chunks(model, loss_fn, [(chunk, 1.0)], None, autocast, True)
        total_loss = total_loss.to(loss.device) + loss * weight
        for k, v in extra.items():
            metrics[k] = metrics.get(k, 0) + v * weight
        norms.append(optimizer.first_step(zero_grad=True))
        with frozen_bn_stats(model), replay_rng(rng_at_w):
            _backward_chunks(model, loss_fn, [(chunk, weight)], None, autocast, True, record=False)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        torch._foreach_add_(accumulated, grads)
        optimizer.unperturb()
    for p, acc in zip(params, accumulated):
        p.grad = acc
    optimizer.base_step()
    return StepResult(total_loss, metrics, grad_norm=torch.stack(norms).mean())
