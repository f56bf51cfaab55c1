"""language domain: workloads land here (see the open language issue). Registers nothing yet."""
