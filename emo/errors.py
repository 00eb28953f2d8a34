"""User-facing errors: the CLIs print ``str(error)`` as one line on stderr and exit with code 2."""


class EMOError(Exception):
    """Bad input (file, checkpoint, option). The message says what is wrong and how to fix it."""


class Terminated(KeyboardInterrupt):  # noqa: N818 - named after the signal, like KeyboardInterrupt
    """SIGTERM, raised in the main thread so that the clean-up of Ctrl-C runs for it too (exit code 143)."""


def raise_terminated(signum, frame) -> None:
    raise Terminated()


def first_line(error: BaseException, limit: int = 160) -> str:
    """An exception's first message line (its type name if it has none), cut to ``limit`` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
