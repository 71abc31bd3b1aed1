"""Summary statistics over lists of numbers."""


def mean(values):
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def median(values):
    if not values:
        raise ValueError("median of an empty list")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid]


def spread(values):
    if not values:
        return 0
    return max(values) - min(values)


def clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value
