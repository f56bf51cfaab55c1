"""Capture and replay the global random state, so SAM's two passes draw the same dropout masks.

JAX implementations of SAM feed one dropout key to both passes of a step; in PyTorch the masks
come from the global generators (the CPU one, and the model's accelerator's for tensors
there), which the first pass advances. Replaying the state saved before the first pass makes
the second pass draw the same masks, so the ascent and the update are taken on the same
stochastic loss (issue 17). After the replayed pass the generators are put back where the
first pass left them: a SAM step advances the global stream by one pass, not two.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["RNGState", "capture_rng", "replay_rng", "restore_rng"]

# (CPU generator state, accelerator device or None, that device's generator state or None)
RNGState = tuple[torch.Tensor, torch.device | None, Any]


def _device_module(device: torch.device | None) -> Any:
    if device is None or device.type == "cpu":
        return None
    module = getattr(torch, device.type, None)  # torch.cuda, torch.xpu, torch.mps
    return module if module is not None and hasattr(module, "get_rng_state") else None


def capture_rng(device: torch.device | None = None) -> RNGState:
    """The global random state now: the CPU generator's and ``device``'s (if not the CPU).
    A few microseconds on the CPU (a 5 KB copy of the Mersenne Twister state)."""
    module = _device_module(device)
    cpu = torch.default_generator.get_state()
    if module is None:
        return cpu, None, None
    # cuda/xpu take a device argument; mps has one device and takes none.
    accel = module.get_rng_state() if device.type == "mps" else module.get_rng_state(device)
    return cpu, device, accel


def restore_rng(state: RNGState) -> None:
    """Set the generators ``capture_rng`` read back to ``state``."""
    cpu, device, accel = state
    torch.default_generator.set_state(cpu)
    if accel is not None:
        module = _device_module(device)
        if device.type == "mps":
            module.set_rng_state(accel)
        else:
            module.set_rng_state(accel, device)


class replay_rng:  # noqa: N801 (used as a context manager, like torch.no_grad)
    """``with replay_rng(state):`` the generators start again from ``state``; on exit they
    return to where they were on entry. ``None`` does nothing (fresh random numbers inside).
    A class, not a generator function: on small models a SAM step notices the difference."""

    __slots__ = ("_state", "_resume")

    def __init__(self, state: RNGState | None) -> None:
        self._state = state

    def __enter__(self) -> None:
        if self._state is not None:
            self._resume = capture_rng(self._state[1])
            restore_rng(self._state)

    def __exit__(self, *exc: object) -> None:
        if self._state is not None:
            restore_rng(self._resume)
