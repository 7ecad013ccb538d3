"""Ctrl-C and SIGTERM: the exit status and message every command derives from an interrupt."""

import signal
import threading

from nnunet_tongue.conversion.convert import Interrupted
from nnunet_tongue.interrupts import Terminated, exit_status, sigterm_as_interrupt, signal_name


def test_ctrl_c_exits_130_and_sigterm_143():
    assert exit_status(KeyboardInterrupt()) == 130
    assert exit_status(Terminated()) == 143


def test_conversion_interrupt_keeps_its_signal():
    assert exit_status(Interrupted(signal.SIGTERM, "stopped")) == 143
    assert "SIGTERM" in str(Interrupted(signal.SIGTERM))


def test_signal_names_read_as_the_user_knows_them():
    assert signal_name(signal.SIGINT) == "Ctrl-C (SIGINT)"
    assert signal_name(signal.SIGTERM) == "SIGTERM"


def test_sigterm_raises_terminated_within_the_block_and_not_after():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_command_run_from_a_thread_leaves_signals_alone():
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with sigterm_as_interrupt():
                pass
        except BaseException as error:  # signal.signal outside the main thread raises ValueError
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    assert errors == []
