"""Keep the converters' and runtimes' own chatter (Python warnings, logging, native absl/cpuinfo lines, tqdm bars)
off the user's terminal: it goes into a log that is kept next to an artifact when something fails."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def captured_output(log: io.StringIO):
    """Send everything written to stdout/stderr, by Python or by native code (absl, cpuinfo, tqdm bars of the
    converters), to ``log`` instead of the user's terminal. The log is kept next to the artifact on failure."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    loggers = {name: logging.getLogger(name) for name in ("executorch", "coremltools", "torch", "absl")}
    levels = {name: logger.level for name, logger in loggers.items()}
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            for logger in loggers.values():
                logger.setLevel(logging.ERROR)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for name, logger in loggers.items():
                logger.setLevel(levels[name])
            sink.seek(0)
            log.write(sink.read().decode("utf-8", errors="replace"))
