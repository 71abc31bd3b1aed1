"""textkit: small text utilities."""

from .case import camel_case, snake_case, title_case
from .roman import from_roman, to_roman
from .slug import slugify
from .stats import char_freq, top_words, word_count, words
from .wrap import fill, wrap

__version__ = "0.3.0"

__all__ = [
    "camel_case",
    "char_freq",
    "fill",
    "from_roman",
    "slugify",
    "snake_case",
    "title_case",
    "to_roman",
    "top_words",
    "word_count",
    "words",
    "wrap",
]
