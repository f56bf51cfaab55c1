"""Synthetic domain: the paper's Fig. 1a teacher-student regression, the signal-noise patch
data of the theory experiments (Chen et al., NeurIPS 2023), and the paper's theory workloads
(1-D ReLU nets, matrix factorization, Allen-Zhu et al.'s two-layer regression)."""

from domains.synthetic import (  # noqa: F401  (registers its workloads)
    allen_zhu,
    matrix_factorization,
    patch_cnn,
    regression,
    relu_1d,
)
