"""graph domain: workloads land here (see the open graph issue). Registers nothing yet."""
