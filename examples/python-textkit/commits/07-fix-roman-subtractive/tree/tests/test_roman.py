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


def test_to_roman_subtractive():
    assert to_roman(4) == "IV"
    assert to_roman(1994) == "MCMXCIV"


def test_round_trip():
    for n in (1, 9, 14, 40, 90, 400, 2024, 3999):
        assert from_roman(to_roman(n)) == n
