from textkit.case import camel_case, snake_case, split_words, title_case


def test_split_words_camel():
    assert split_words("parseHttpRequest") == ["parse", "http", "request"]


def test_snake_case_from_camel():
    assert snake_case("parseHttpRequest") == "parse_http_request"


def test_snake_case_from_words():
    assert snake_case("Hello big World") == "hello_big_world"


def test_camel_case_empty():
    assert camel_case("") == ""


def test_title_case_small_words():
    assert title_case("the lord of the rings") == "The Lord of the Rings"


def test_camel_case_starts_lower():
    assert camel_case("parse_http_request") == "parseHttpRequest"
