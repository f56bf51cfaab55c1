"""The theory experiments of ``runners/theory.py``, one module per experiment (issue 22).

Each module has ``add_parser(subparsers)`` (its subcommand and options) and ``run(args, store,
ex) -> exit code``; runs go through ``runners.engine.train.train_run`` into the store, and figures are
drawn by ``results/theory_figures.py`` from the store alone."""
