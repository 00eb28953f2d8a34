"""User-facing errors: the CLIs print ``str(error)`` as one line on stderr and exit with code 2."""


class EMOError(Exception):
    """Bad input (file, checkpoint, option). The message says what is wrong and how to fix it."""
