"""Roman numerals."""

_VALUES = [
    (1000, "M"),
    (500, "D"),
    (100, "C"),
    (50, "L"),
    (10, "X"),
    (5, "V"),
    (1, "I"),
]


def to_roman(n):
    """Roman numeral of 1 <= n <= 3999."""
    if not 0 < n < 4000:
        raise ValueError(f"out of range: {n}")
    out = []
    for value, sym in _VALUES:
        while n >= value:
            out.append(sym)
            n -= value
    return "".join(out)


def from_roman(s):
    """Integer value of a roman numeral."""
    table = {sym: value for value, sym in _VALUES if len(sym) == 1}
    total = 0
    prev = 0
    for ch in reversed(s.upper()):
        if ch not in table:
            raise ValueError(f"not a roman digit: {ch}")
        v = table[ch]
        if v < prev:
            total -= v
        else:
            total += v
            prev = v
    return total
