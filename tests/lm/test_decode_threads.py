"""`decode_threads`: a second decoding thread only while the machine has a core to spare."""

from __future__ import annotations

import os

import pytest

from eigendspy.lm.local.threads import decode_threads


@pytest.mark.parametrize(("cores", "load", "want"), [
    (2, 0.3, 2), (2, 1.4, 2), (2, 1.6, 1), (2, 6.0, 1), (1, 0.0, 1), (16, 3.0, 2)])
def test_auto_takes_a_second_thread_only_with_a_core_to_spare(monkeypatch, cores, load, want):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert decode_threads() == want
    assert decode_threads(3) == 3  # asked for: taken as it is


def test_without_a_load_average_auto_is_one_thread(monkeypatch):
    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert decode_threads() == 1
