"""Ctrl-C and SIGTERM end a command the same clean way: clean-up runs, one line is printed, exit 130 / 143."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that the clean-up written for Ctrl-C runs for it too."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main thread; elsewhere
    (a command run from a thread) signals are left as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind ``interrupt``: its ``signum`` (SIGTERM for :class:`Terminated`), else SIGINT (Ctrl-C)."""
    return int(getattr(interrupt, "signum", signal.SIGINT))


def signal_name(signum: int) -> str:
    """``Ctrl-C (SIGINT)`` or the signal's name, for messages."""
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal number (143 for SIGTERM, 130 for Ctrl-C)."""
    return 128 + signal_number(interrupt)


def ignore_sigint_in_worker() -> None:
    """Initializer for worker processes: Ctrl-C goes to the whole process group, the parent alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
