"""Property-based tests of width parsing: valid multipliers round-trip through
format_width/parse_width exactly; any other text raises WidthError and nothing else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samcore.width import WidthError, format_width, parse_width, parse_widths

POSITIVE = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=100, deadline=None)


@SETTINGS
@given(POSITIVE)
def test_format_then_parse_is_exact(m):
    text = format_width(m)
    assert text.endswith("x")
    assert parse_width(text) == m  # exactly: two widths never print the same


@SETTINGS
@given(st.lists(POSITIVE, min_size=1, max_size=5))
def test_width_lists_round_trip(ms):
    assert parse_widths(",".join(format_width(m) for m in ms), ()) == ms


@SETTINGS
@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["x", "X", "", " x "]))
def test_integer_multipliers(n, suffix):
    assert parse_width(f"{n}{suffix}") == n


@SETTINGS
@given(st.text(max_size=12))
def test_any_text_is_a_width_or_a_width_error(text):
    try:
        value = parse_width(text)
    except WidthError:
        return
    assert math.isfinite(value) and value > 0
    # what was accepted is a plain decimal multiplier, optionally followed by x
    body = text.strip().rstrip("xX")
    assert float(body) == value


@SETTINGS
@given(st.text(alphabet="0123456789.,-+eExX all", max_size=16))
def test_any_list_text_is_widths_or_a_width_error(text):
    try:
        widths = parse_widths(text, (1.0, 2.0))
    except WidthError:
        return
    assert widths and all(math.isfinite(w) and w > 0 for w in widths)


@SETTINGS
@given(
    st.one_of(
        st.floats(max_value=0.0),
        st.just(math.inf),
        st.just(math.nan),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_non_positive_or_non_numbers_are_width_errors(value):
    with pytest.raises(WidthError):
        parse_width(value)
