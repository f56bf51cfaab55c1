"""Results: the SQLite store and the tables regenerated from it (no torch, no domains)."""
