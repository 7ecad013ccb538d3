"""Ctrl-C and SIGTERM: the exit status and message every command derives from an interrupt."""

import os
import signal
import threading

import pytest

from nnunet_tongue.conversion.convert import Interrupted
from nnunet_tongue.interrupts import (
    Terminated,
    exit_status,
    interrupted_by,
    sigterm_as_interrupt,
    signal_name,
    signals_held,
    signals_ignored,
    stopped,
)


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


def test_a_signal_during_a_held_step_arrives_once_the_step_is_done():
    order: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            order.append("step finished")
    assert order == ["step finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_signals_are_ignored_while_the_last_message_prints_and_handled_again_after():
    with signals_ignored():
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt if it were not ignored
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_a_stopped_command_prints_one_line_saying_which_signal_and_returns_its_status(capsys):
    status = stopped("nnunet-tongue x", f"{interrupted_by(Terminated())}; nothing was written", Terminated())
    assert status == 143
    assert capsys.readouterr().err == "nnunet-tongue x: interrupted by SIGTERM; nothing was written\n"
