import pytest

from textkit.wrap import fill, wrap


def test_wrap_short_text_is_one_line():
    assert wrap("hello world", 40) == ["hello world"]


def test_wrap_splits_long_text():
    assert wrap("aaa bbb ccc ddd", 8) == ["aaa bbb", "ccc ddd"]


def test_wrap_long_word_alone():
    assert wrap("a verylongword b", 5) == ["a", "verylongword", "b"]


def test_wrap_rejects_zero_width():
    with pytest.raises(ValueError):
        wrap("x", 0)


def test_fill_joins_lines():
    assert fill("aaa bbb ccc", 4) == "aaa\nbbb\nccc"


def test_wrap_exact_width_fits():
    assert wrap("abc def", 7) == ["abc def"]
