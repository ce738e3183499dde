"""streamwatch.filewatch: the one polling behaviour of config.toml, rules/ and the model's folders."""

from __future__ import annotations

import pytest

from streamwatch.filewatch import Edit, FileWatch


class Disk:
    """A signature that the test sets, as a file being written would change it between polls."""

    def __init__(self, value: object) -> None:
        self.value, self.error = value, False

    def read(self) -> object:
        if self.error:
            raise OSError("unreadable")
        return self.value


def test_a_change_is_reported_once_after_it_stood_still_for_one_poll() -> None:
    disk = Disk(1)
    watch = FileWatch(disk.read)
    assert watch.poll() is None  # nothing changed
    disk.value = 2  # a write begins
    assert watch.poll() is None  # first seen: may be half written
    disk.value = 3  # still being written
    assert watch.poll() is None
    assert watch.poll() == Edit(1, 3)  # stood still: acted on, with what was acted on before
    assert watch.poll() is None and watch.poll() is None  # once


def test_a_change_undone_before_it_settled_is_no_change() -> None:
    disk = Disk("a")
    watch = FileWatch(disk.read)
    disk.value = "b"
    assert watch.poll() is None
    disk.value = "a"
    assert watch.poll() is None and watch.poll() is None


@pytest.mark.parametrize("polls_while_broken", [1, 3])
def test_a_read_error_reaches_the_caller_and_moves_nothing(polls_while_broken: int) -> None:
    disk = Disk(1)
    watch = FileWatch(disk.read)
    disk.error = True
    for _ in range(polls_while_broken):
        with pytest.raises(OSError, match="unreadable"):
            watch.poll()
    disk.error, disk.value = False, 2  # back, changed meanwhile: still waits for one still poll
    assert watch.poll() is None
    assert watch.poll() == Edit(1, 2)
