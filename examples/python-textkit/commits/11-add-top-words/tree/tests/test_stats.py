from textkit.stats import char_freq, top_words, word_count, words


def test_words_strips_punctuation():
    assert words("Hello, world!") == ["hello", "world"]


def test_word_count_simple():
    assert word_count("one two three") == 3


def test_word_count_empty():
    assert word_count("") == 0


def test_char_freq_ignores_spaces():
    assert char_freq("a b a") == {"a": 2, "b": 1}


def test_word_count_multiple_spaces():
    assert word_count("  one   two  ") == 2


def test_top_words_by_frequency():
    assert top_words("b a b c b a", n=2) == ["b", "a"]


def test_top_words_ties_alphabetical():
    assert top_words("pear apple fig", n=2) == ["apple", "fig"]
