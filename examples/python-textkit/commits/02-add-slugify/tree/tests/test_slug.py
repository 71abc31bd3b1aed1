from textkit.slug import slugify


def test_slugify_lowercases_words():
    assert slugify("Hello World") == "hello-world"


def test_slugify_custom_separator():
    assert slugify("a b c", sep="_") == "a_b_c"


def test_slugify_strips_accents():
    assert slugify("Crème brûlée") == "creme-brulee"
