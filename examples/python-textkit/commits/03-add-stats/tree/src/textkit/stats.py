"""Word statistics."""

from collections import Counter


def words(text):
    """The words of ``text``, lower-cased, punctuation stripped."""
    out = []
    for raw in text.split():
        w = raw.strip(".,;:!?\"'()").lower()
        if w:
            out.append(w)
    return out


def word_count(text):
    """Number of whitespace-separated words."""
    if not text:
        return 0
    return len(text.split(" "))


def char_freq(text):
    """Frequency of each non-space character."""
    return dict(Counter(c for c in text if not c.isspace()))
