"""nas.gate: GPU work of several threads held shared, a capture alone, holders stepping aside."""

from __future__ import annotations

import threading
import time

from nas.gate import Gate


def test_exclusive_waits_for_holders_and_holders_step_aside_at_yield_points() -> None:
    gate = Gate()
    events: list[str] = []
    stop = threading.Event()
    stepping = threading.Event()

    def trainer() -> None:
        with gate.held():
            with gate.held():  # nested holds in one thread count once
                while not stop.is_set():
                    stepping.set()
                    gate.yield_point()
                    time.sleep(0.001)
            events.append("trainer done")

    t = threading.Thread(target=trainer)
    t.start()
    assert stepping.wait(5)
    with gate.exclusive():  # gets in although the trainer never lets go of its hold
        events.append("capture")
        assert gate._readers == 0
    stop.set()
    t.join(5)
    assert events == ["capture", "trainer done"]


def test_a_holder_can_take_the_gate_exclusively_and_get_its_hold_back() -> None:
    gate = Gate()
    with gate.held():
        with gate.exclusive():
            assert gate._readers == 0 and gate._writer == threading.get_ident()
            with gate.held(), gate.exclusive():  # re-entrant inside its own exclusive section
                pass
        assert gate._readers == 1 and gate._writer is None
    assert gate._readers == 0


def test_a_waiting_capture_keeps_new_holders_out() -> None:
    gate = Gate()
    order: list[str] = []
    release = threading.Event()

    def first() -> None:
        with gate.held():
            release.wait(5)
            gate.yield_point()
            order.append("first resumed")

    def capture() -> None:
        with gate.exclusive():
            order.append("capture")

    def late() -> None:
        with gate.held():
            order.append("late holder")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    time.sleep(0.05)
    threads.append(threading.Thread(target=capture))
    threads[1].start()
    time.sleep(0.05)  # the capture now waits for `first`
    threads.append(threading.Thread(target=late))
    threads[2].start()
    time.sleep(0.05)
    assert order == []
    release.set()
    for t in threads:
        t.join(5)
    assert order[0] == "capture" and set(order[1:]) == {"first resumed", "late holder"}
