"""A run-level option is declared once (runners.engine.config.option): a field added to RunConfig is
seen by run.py's flags, the grid expansion, the sweep spec's flags and the run id."""

from __future__ import annotations

import dataclasses

import pytest

import runners.engine.config
import runners.engine.plan
import runners.run
from domains import create_workload
from runners.engine.config import RunConfig, option, run_options
from runners.engine.sweep_spec import SpecError, load_sweep


@pytest.fixture
def extended(monkeypatch):
    """RunConfig with one more option, as a contributor would add it (one field)."""
    cls = dataclasses.make_dataclass(
        "RunConfig",
        [
            (
                "label_smoothing",
                float,
                option(0.0, "label smoothing epsilon (test field)", hash_omit_at_default=True),
            )
        ],
        bases=(RunConfig,),
        frozen=True,
    )
    for module in (runners.engine.config, runners.engine.plan, runners.run):
        monkeypatch.setattr(module, "RunConfig", cls)
    return cls


def test_the_declared_options_are_the_runconfig_fields_with_option_metadata():
    # counted from the class body: the seven run-level options, in order
    assert [f.name for f in run_options()] == [
        "adaptive",
        "m_sharpness",
        "micro_batch_size",
        "precision",
        "sam_start",
        "sam_end",
        "protocol",
    ]


def test_a_new_option_reaches_the_flag_the_grid_the_sweep_and_the_hash(extended, tmp_path):
    parser = runners.run.build_parser()
    assert "label smoothing epsilon" in parser.format_help()
    args, extra = parser.parse_known_args(
        ["--workload", "synthetic-regression", "--label-smoothing", "0.1", "--optimizer", "sam"]
    )
    assert extra == [] and args.label_smoothing == 0.1
    workload = create_workload("synthetic-regression", "smoke")
    plan = runners.run._plan(workload, args, "smoke")
    assert [c.label_smoothing for c in plan] == [0.1]

    spec = tmp_path / "s.yaml"
    text = (
        "name: t\npreset: smoke\nseeds: [0]\noptimizers: [sam]\nentries:\n"
        "  - {workload: synthetic-regression, widths: [1x], flags: {label_smoothing: %s}}\n"
    )
    spec.write_text(text % "0.2")
    (swept,) = load_sweep(spec).configs
    assert swept.label_smoothing == 0.2
    spec.write_text(text % "abc")
    with pytest.raises(SpecError, match="label_smoothing must be a number"):
        load_sweep(spec)

    # the hash: out of the id at its default (runs stored before the field keep their ids)
    base = dict(workload="w", preset="p", width=1.0, optimizer="sgd", base_optimizer="sgd")
    assert extended(**base).run_id == RunConfig(**base).run_id
    assert extended(**base, label_smoothing=0.1).run_id != RunConfig(**base).run_id
