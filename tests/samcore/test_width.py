"""Width parsing and scaling: exact values, and one clear error for anything else."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from samcore import WidthError, count_params, format_width, parse_width, parse_widths, scale_width


@pytest.mark.parametrize(
    "text,value",
    [
        ("4x", 4.0),
        ("0.25x", 0.25),
        ("4", 4.0),
        ("4.0x", 4.0),
        ("1X", 1.0),
        (" 2x ", 2.0),
        (".5x", 0.5),
        (3, 3.0),
    ],
)
def test_parse_width_accepts(text, value):
    assert parse_width(text) == value


@pytest.mark.parametrize(
    "text",
    [
        "4y",
        "0x",
        "-1x",
        "x",
        "",
        "4xx",
        "four",
        "1/2x",
        "nanx",
        "infx",
        "1e400x",
        True,
        None,
        "4x,",
    ],
)
def test_parse_width_rejects_with_width_error(text):
    with pytest.raises(WidthError, match="width"):
        parse_width(text)


@given(st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False))
def test_format_then_parse_round_trips(value):
    assert parse_width(format_width(value)) == pytest.approx(value, rel=1e-5)


@given(st.text(alphabet="0123456789.xXy-+e ,/", max_size=8))
def test_parse_width_never_crashes_otherwise(text):
    try:
        value = parse_width(text)
    except WidthError:
        return
    assert value > 0


def test_parse_widths_lists_and_all():
    assert parse_widths("1x,2x,4x", (1.0,)) == [1.0, 2.0, 4.0]
    assert parse_widths("all", (0.5, 1.0)) == [0.5, 1.0]
    with pytest.raises(WidthError):
        parse_widths("1x,,2x", (1.0,))


def test_scale_width():
    assert scale_width(64, 0.0625) == 4
    assert scale_width(100, 10) == 1000
    assert scale_width(300, 0.25) == 75
    assert scale_width(64, 1.5, multiple_of=8) == 96
    with pytest.raises(WidthError):
        scale_width(4, 0.1)  # 0.4 units would silently become 0


def test_count_params_counts_shared_once_and_works_on_meta():
    lin = torch.nn.Linear(10, 10)
    assert count_params(torch.nn.Sequential(lin, lin)) == 110
    with torch.device("meta"):
        big = torch.nn.Linear(10_000, 10_000)
    assert count_params(big) == 100_010_000
    frozen = torch.nn.Linear(3, 3)
    frozen.weight.requires_grad_(False)
    assert count_params(frozen) == 3 and count_params(frozen, trainable_only=False) == 12
