"""Synthetic domain: the paper's Fig. 1a teacher-student regression (and, later, the
signal-noise patch data of the theory experiments)."""

from domains.synthetic import regression  # noqa: F401  (registers its workloads)
