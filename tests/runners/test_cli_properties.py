"""Property-based tests of the command line: override parsing, typed config fields, and
run.py's main on random argument lists (fast paths only: nothing is trained)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.workload import ConfigError, TrainConfig, parse_field_value
from runners import run
from runners.engine.train import RunOutcome
from runners.run import UsageError, _parse_overrides

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@SETTINGS
@given(st.lists(st.one_of(TOKEN, TOKEN.map(lambda t: "--" + t)), max_size=6))
def test_overrides_parse_or_raise_usage_error(tokens):
    try:
        out = _parse_overrides(tokens)
    except UsageError as exc:
        assert str(exc)  # main() prints it on one line (see test_bad_inputs)
        return
    assert all(isinstance(k, str) and "-" not in k for k in out)
    assert all(isinstance(v, str) for v in out.values())


@SETTINGS
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True), st.text(max_size=8), max_size=4
    )
)
def test_well_formed_overrides_round_trip(pairs):
    tokens = [f"--{k}={v}" for k, v in pairs.items()]
    assert _parse_overrides(tokens) == pairs


FIELDS = sorted(TrainConfig.__dataclass_fields__)
KINDS = {  # what each field's declared type must produce
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, float),
    bool: lambda v: isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


@SETTINGS
@given(st.sampled_from(FIELDS + ["not_a_field"]), st.text(max_size=16))
def test_field_values_are_typed_or_config_errors(key, text):
    try:
        value = parse_field_value(TrainConfig, key, text)
    except ConfigError as exc:
        assert str(exc)
        return
    declared = type(getattr(TrainConfig(), key))
    if declared is tuple:
        assert isinstance(value, tuple) and all(isinstance(v, float) for v in value)
    else:
        assert KINDS[declared](value), (key, text, value)


FLAGS = st.sampled_from(
    [
        "--width",
        "--rho",
        "--seeds",
        "--optimizer",
        "--precision",
        "--m-sharpness",
        "--micro-batch-size",
        "--device",
        "--preset",
        "--domain",
        "--num_epochs",
        "--learning_rate",
        "--batch_size",
        "--loss",
        "--warmup_steps",
    ]
)
VALUES = st.one_of(
    st.sampled_from(["1x", "2x", "0x", "-1", "nan", "inf", "0,1", "smoke", "sam", "cpu", "0"]),
    st.text(max_size=6),
)


def _quiet_main(argv):
    """main() with stdout/stderr captured and training replaced by a no-op: a random
    argument list that is valid would otherwise start a run."""
    err, out = io.StringIO(), io.StringIO()

    def no_training(workload, cfg, store, ex):
        return RunOutcome(cfg.run_id, "skipped", {}, "not trained in this test")

    with tempfile.TemporaryDirectory() as results:
        with (
            mock.patch.object(run, "train_run", no_training),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(out),
        ):
            try:
                code = run.main([*argv, "--results", results, "--no-progress"])
            except SystemExit as exc:  # argparse's own --help exits; nothing else may
                code = exc.code
    return code, err.getvalue()


@SETTINGS
@given(st.lists(st.tuples(FLAGS, VALUES), max_size=4), st.booleans())
def test_main_on_random_arguments_exits_cleanly(pairs, list_config):
    argv = ["--workload", "synthetic-regression", "--preset", "smoke"]
    for flag, value in pairs:
        argv.append(f"{flag}={value}")
    if list_config:
        argv.append("--list-config")
    code, err = _quiet_main(argv)
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("run.py: error: "), (argv, err)
