"""URL slugs."""

import re
import unicodedata


def slugify(text, sep="-"):
    """Lower-case ASCII slug of ``text`` with words joined by ``sep``."""
    norm = unicodedata.normalize("NFKD", text)
    ascii_text = norm.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", sep, ascii_text.lower())
