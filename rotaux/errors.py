"""The one exception type that `rotaux` turns into a clean command-line error."""


class RotauxError(ValueError):
    """A problem with the user's configuration or data; the message says what and how to fix it."""
