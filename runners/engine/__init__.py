"""The engine behind the commands in ``runners/``: run configs, plans, the training loop,
checkpoints, leases, measures, sweep specs and the shared CLI pieces."""
