"""Case conversions between snake_case, camelCase and Title Case."""

import re

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[\s_\-]+")


def split_words(name):
    """Splits an identifier or phrase into lower-case words."""
    return [w.lower() for w in _BOUNDARY.split(name) if w]


def snake_case(name):
    return "_".join(split_words(name))


def camel_case(name):
    parts = split_words(name)
    return "".join(p.capitalize() for p in parts)


def title_case(text):
    small = {"a", "an", "and", "of", "the", "to", "in"}
    out = []
    for i, w in enumerate(split_words(text)):
        out.append(w if i > 0 and w in small else w.capitalize())
    return " ".join(out)
