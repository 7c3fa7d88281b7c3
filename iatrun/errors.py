"""The one exception type iatrun raises for a user's mistake."""


class IatrunError(ValueError):
    """A bad name, value or path given by the user.

    The CLI catches it once and prints ``error: <message>`` with exit code 2. It subclasses
    ``ValueError`` so library callers can catch either.
    """
