"""Greedy word wrapping."""


def wrap(text, width):
    """Lines of at most ``width`` characters; longer words get a line of their own."""
    if width < 1:
        raise ValueError("width must be positive")
    lines = []
    current = ""
    for word in text.split():
        candidate = word if not current else current + " " + word
        if len(candidate) <= width:
            current = candidate
        else:
            if current:
                lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def fill(text, width):
    """The wrapped lines joined with newlines."""
    return "\n".join(wrap(text, width))
