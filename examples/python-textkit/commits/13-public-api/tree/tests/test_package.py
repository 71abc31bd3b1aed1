import textkit


def test_public_api():
    assert textkit.slugify("A B") == "a-b"
    assert textkit.to_roman(2) == "II"


def test_version():
    assert textkit.__version__.count(".") == 2
