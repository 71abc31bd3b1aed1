from textkit.stats import char_freq, word_count, words


def test_words_strips_punctuation():
    assert words("Hello, world!") == ["hello", "world"]


def test_word_count_simple():
    assert word_count("one two three") == 3


def test_word_count_empty():
    assert word_count("") == 0


def test_char_freq_ignores_spaces():
    assert char_freq("a b a") == {"a": 2, "b": 1}
