"""vision domain: workloads land here (see the open vision issue). Registers nothing yet."""
