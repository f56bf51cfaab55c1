"""rl domain: workloads land here (see the open rl issue). Registers nothing yet."""
