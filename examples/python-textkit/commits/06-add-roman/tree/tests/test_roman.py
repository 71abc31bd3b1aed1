import pytest

from textkit.roman import from_roman, to_roman


def test_to_roman_small():
    assert to_roman(3) == "III"


def test_to_roman_tens():
    assert to_roman(27) == "XXVII"


def test_to_roman_out_of_range():
    with pytest.raises(ValueError):
        to_roman(0)


def test_from_roman_subtractive():
    assert from_roman("MCMXCIV") == 1994


def test_from_roman_rejects_garbage():
    with pytest.raises(ValueError):
        from_roman("XIZ")
