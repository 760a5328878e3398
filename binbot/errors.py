"""The one exception type a user sees as a one-line message."""


class BinbotError(Exception):
    """A problem the user can act on; the CLI prints it as one line and exits non-zero."""
