"""Synthetic domain: the paper's Fig. 1a teacher-student regression and the signal-noise patch
data of the theory experiments (Chen et al., NeurIPS 2023)."""

from domains.synthetic import patch_cnn, regression  # noqa: F401  (registers its workloads)
