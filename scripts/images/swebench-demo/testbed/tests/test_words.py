from tally.words import count_words, report, top_words


def test_count_words():
    assert count_words("a b a. B!") == {"a": 2, "b": 2}


def test_count_words_empty():
    assert count_words("  ") == {}


def test_top_words():
    assert top_words("x y y z z z", 2) == ["z", "y"]


def test_report_uses_the_image_package():
    assert report("b a b") == ["a: 1", "b: 2"]
