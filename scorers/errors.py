"""Error types: every failure names what was wrong and how to fix it."""


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreadable, or not in the expected layout."""


class ImageInputError(ValueError):
    """Images passed to a scorer are not a valid RGB batch in [0, 1]."""
