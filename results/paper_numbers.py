"""The paper's reported numbers, per workload and width, in this suite's units.

Transcribed from ../shared/PAPERS.md (Shin et al., "Critical Influence of Overparameterization
on Sharpness-aware Minimization", UAI 2025: appendix A tables and values read from Fig. 1, means
of 3 seeds). Paper widths are mapped to our width multipliers by each workload module's
docstring ("1x" = the workload's reference model):

    synthetic-regression  student hidden h = 100..1000   -> h / 100        (1x .. 10x)
    mnist-mlp             [300p, 100p], p                -> p              (0.25x .. 10x)
    cifar10-resnet18      base filters 4..256            -> filters / 64   (0.0625x .. 4x)
    cifar10-vit           hidden 32..1024                -> hidden / 32    (1x .. 32x)
    imagenet-resnet50     base filters 16..80            -> filters / 64   (0.25x .. 1.25x)
    ud-pos-transformer    hidden d = 128..640            -> d / 256        (0.5x .. 2.5x)
    sst2-lstm             hidden 32..512                 -> hidden / 128   (0.25x .. 4x)
    ogbg-molpcba          latent 128..512                -> latent / 128   (1x .. 4x)
    atari-ppo             Nature-CNN x k/2, k = 1..4     -> k / 2          (0.5x .. 2x)

Units. Our metrics are what the workloads' ``evaluate`` returns: accuracy in percent for the
vision and language workloads (as the paper), MSE for the regression, mean episode return for
RL, and OGB's evaluator value as a fraction 0..1 for the ogbg workloads, where the paper reports
AP x100: its ogbg numbers are divided by 100 here. (Planetoid accuracy is a fraction 0..1; no
paper numbers.) ``METRIC_UNITS`` names each workload's unit for the table headers.
Gain = SAM minus base in the metric's better direction (base - SAM for MSE), as the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PaperResult",
    "PaperAblation",
    "PAPER",
    "PAPER_ABLATIONS",
    "METRIC_UNITS",
    "metric_unit",
    "paper_at",
]

Num = float | None


@dataclass(frozen=True)
class PaperResult:
    """One workload's row of the paper's Fig. 1 (or of an ablation), aligned by width."""

    widths: tuple[float, ...]
    """our width multipliers, one per paper width"""
    gain: tuple[Num, ...]
    """the paper's reported gain (SAM better > 0), our units"""
    base: tuple[Num, ...] = ()
    """base optimizer's metric per width (empty = not given)"""
    sam: tuple[Num, ...] = ()
    """SAM's metric at its best rho per width (empty = not given)"""
    params: tuple[Num, ...] = ()
    """the paper's parameter count per width (empty = not given)"""
    best_rho: tuple[Num, ...] = ()
    """the paper's best rho per width (empty = not given)"""
    gain_err: tuple[Num, ...] = ()
    """the paper's +- on the gain, where it gives one"""
    note: str = ""
    """what differs from our default setup"""

    def __post_init__(self) -> None:
        n = len(self.widths)
        for name in ("gain", "base", "sam", "params", "best_rho", "gain_err"):
            if len(getattr(self, name)) not in (0, n):
                raise ValueError(f"paper numbers: {name} has the wrong length for {n} widths")


@dataclass(frozen=True)
class PaperAblation:
    """A paper ablation: the runs whose workload config has ``field == value`` (and ``extra``)."""

    workload: str
    field: str
    value: float
    result: PaperResult
    extra: dict[str, Any] = field(default_factory=dict)
    """further workload-config fields the paper's runs had (e.g. the sparsity method)"""


def _diff(base: tuple[float, ...], sam: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(s - b, 6) for b, s in zip(base, sam, strict=True))


PAPER: dict[str, PaperResult] = {
    "synthetic-regression": PaperResult(
        widths=tuple(float(k) for k in range(1, 11)),
        params=tuple(102.0 * 100 * k + 1 for k in range(1, 11)),
        gain=(0.026, 0.029, 0.035, 0.047, 0.056, 0.062, 0.063, 0.074, 0.080, 0.083),
        # SGD is given at the ends only (1.0315 -> 1.0868); SAM ~1.004-1.005 throughout
        base=(1.0315, None, None, None, None, None, None, None, None, 1.0868),
    ),
    "mnist-mlp": PaperResult(
        widths=(0.25, 0.5, 1.0, 4.0, 10.0),
        params=(61_035, 125_810, 266_610, 1_426_410, 5_366_010),
        base=(98.20, 98.55, 98.56, 98.67, 98.67),
        sam=(98.27, 98.61, 98.74, 98.86, 98.85),
        gain=(0.07, 0.06, 0.18, 0.19, 0.19),
        best_rho=(0.02, 0.1, 0.2, 0.2, 0.2),
    ),
    "cifar10-resnet18": PaperResult(
        widths=(0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0),
        params=(44_622, 176_402, 701_466, 2_797_610, 11_173_962, 44_662_922, 178_585_866),
        base=(83.62, 88.79, 92.57, 94.06, 95.03, 95.24, 95.77),
        sam=(83.98, 89.45, 93.01, 94.91, 96.00, 96.47, 96.78),
        gain=(0.36, 0.66, 0.44, 0.85, 0.96, 1.23, 1.01),
        best_rho=(0.005, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2),
    ),
    "cifar10-vit": PaperResult(
        widths=(1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
        gain=(0.07, 1.47, 1.29, 0.74, 0.38, -0.01),
        note="the paper's 'regularization needed' ablation: the gain does not grow",
    ),
    "imagenet-resnet50": PaperResult(
        widths=(0.25, 0.5, 0.75, 1.0, 1.25),
        params=(1.99e6, 6.92e6, 14.77e6, 25.56e6, 39.27e6),
        base=(63.85, 71.94, 74.92, 76.39, 77.32),
        sam=(63.88, 71.98, 75.10, 76.74, 77.86),
        gain=(0.03, 0.04, 0.17, 0.35, 0.54),
    ),
    "ud-pos-transformer": PaperResult(
        widths=(0.5, 1.0, 1.5, 2.0, 2.5),
        params=(5.5e6, 13.5e6, 23.7e6, 36.3e6, 51.3e6),
        base=(68.76, 68.61, 68.61, 68.11, 68.16),
        sam=(68.66, 69.26, 69.44, 69.18, 69.31),
        gain=(-0.10, 0.65, 0.83, 1.06, 1.15),
        note="paper: UD Ancient Greek-Perseus XPOS; our default treebank is English-EWT UPOS",
    ),
    "sst2-lstm": PaperResult(
        widths=(0.25, 0.5, 1.0, 2.0, 3.0, 4.0),
        params=(0.53e6, 1.1e6, 2.5e6, 5.8e6, 10.0e6, 15.1e6),
        base=(84.90, 85.55, 85.55, 84.94, 85.51, 85.13),
        sam=(85.13, 85.82, 86.05, 86.16, 86.51, 86.28),
        gain=(0.23, 0.27, 0.50, 1.22, 0.99, 1.15),
    ),
    "ogbg-molpcba": PaperResult(  # the paper's AP x100, divided by 100 (our evaluator's scale)
        widths=(1.0, 2.0, 4.0),
        params=(184_192, 695_936, 2_702_464),
        base=(0.1974, 0.2167, 0.2157),
        sam=(0.1961, 0.2190, 0.2204),
        gain=(-0.0013, 0.0024, 0.0047),
        note="paper reports validation AP",
    ),
    "atari-ppo": PaperResult(
        widths=(0.5, 1.0, 1.5, 2.0),
        params=(424_533, 1_686_693, 3_786_485, 6_723_909),
        base=(377.0, 506.0, 584.0, 686.0),
        sam=(405.0, 523.0, 748.0, 808.0),
        gain=(28.0, 18.0, 164.0, 122.0),
        gain_err=(19.0, 40.0, 64.0, 112.0),
        note="Breakout, 10M steps, best score",
    ),
}

# Ablations (PAPERS.md "Ablations"). Label noise: symmetric flips; gain = SAM - SGD computed
# from the two reported accuracies. Sparsity: the paper keeps the number of remaining
# parameters equal to a small dense model's, our ``match_params_of`` (0.25 = 16 filters for
# ResNet-18, p = 0.25 for the MLP).
_LN_W = (0.0625, 0.25, 0.5, 1.0)
_LN75 = ((54.4, 36.5, 26.8, 21.7), (59.9, 69.5, 71.0, 71.8))
_LN50 = ((76.8, 65.7, 50.0, 50.4), (78.5, 86.6, 88.8, 90.0))
PAPER_ABLATIONS: tuple[PaperAblation, ...] = (
    PaperAblation(
        "cifar10-resnet18",
        "label_noise",
        0.75,
        PaperResult(_LN_W, _diff(*_LN75), base=_LN75[0], sam=_LN75[1]),
    ),
    PaperAblation(
        "cifar10-resnet18",
        "label_noise",
        0.5,
        PaperResult(_LN_W, _diff(*_LN50), base=_LN50[0], sam=_LN50[1]),
    ),
    PaperAblation(
        "cifar10-resnet18",
        "match_params_of",
        0.25,
        PaperResult((0.25, 0.375, 0.5, 1.0), (0.44, 0.50, 0.79, 0.76)),
        extra={"sparsity_method": "random"},
    ),
    PaperAblation(
        "cifar10-resnet18",
        "match_params_of",
        0.25,
        PaperResult((0.25, 0.375, 0.5, 1.0), (0.44, 0.82, 0.61, 0.88)),
        extra={"sparsity_method": "snip"},
    ),
    PaperAblation(
        "mnist-mlp",
        "match_params_of",
        0.25,
        PaperResult((0.25, 0.5, 1.0, 4.0), (0.07, 0.15, 0.17, 0.28)),
        extra={"sparsity_method": "random"},
    ),
)

METRIC_UNITS: dict[str, str] = {
    "synthetic-regression": "MSE",
    **{
        w: "accuracy, %"
        for w in (
            "mnist-mlp",
            "cifar10-resnet18",
            "cifar10-vit",
            "imagenet-resnet50",
            "sst2-lstm",
            "sst2-transformer",
            "ud-pos-transformer",
        )
    },
    "ogbg-molpcba": "AP, 0..1",
    "ogbg-molhiv": "ROC-AUC, 0..1",
    "ogbg-moltox21": "ROC-AUC, 0..1",
    "planetoid-cora": "accuracy, 0..1",
    "planetoid-citeseer": "accuracy, 0..1",
    "cartpole-ppo": "return",
    "acrobot-ppo": "return",
    "atari-ppo": "return",
}


def metric_unit(workload: str) -> str:
    """The unit of the workload's target metric ('' when the suite does not know it)."""
    return METRIC_UNITS.get(workload, "")


def paper_at(result: PaperResult | None, width: float, what: str = "gain") -> float | None:
    """The paper's ``what`` (gain, base, sam, params, best_rho, gain_err) at our width, or None."""
    if result is None:
        return None
    values = getattr(result, what)
    for w, v in zip(result.widths, values, strict=False):
        if abs(w - width) < 1e-9:
            return v
    return None
