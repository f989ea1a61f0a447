"""Error types: every failure names what was wrong and how to fix it."""


class WeightsError(RuntimeError):
    """A checkpoint is missing, unreadable, or not in the expected layout."""


class ImageInputError(ValueError):
    """Images passed to a scorer are not a valid RGB batch in [0, 1]."""


class ParameterError(ValueError):
    """A bad value for the library parameter ``parameter``: the message starts with its name, and
    a front end that calls it something else (the CLI's ``--samples``) can say so."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter, self.message = parameter, message
