"""Word counts, formatted with the image's own `tallyfmt` package."""

from tallyfmt import fmt_count


def count_words(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts


def top_words(text, n):
    counts = count_words(text)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [word for word, _ in ranked[:n]]


def report(text):
    counts = count_words(text)
    return [fmt_count(word, counts[word]) for word in sorted(counts)]
