"""A dependency that exists only inside the test image (not on the host)."""


def fmt_count(word, n):
    return f"{word}: {n}"
