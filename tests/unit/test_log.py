"""Stage timings: what ``timed`` logs, and ``step_times`` collecting it for the bench."""

from __future__ import annotations

import logging

from crmlake.log import get_logger, step_times, timed


def test_step_times_collects_the_steps_ended_inside_it_without_showing_info_logs(capsys):
    root = logging.getLogger("crmlake")
    shown = logging.StreamHandler()  # what the console shows: warnings only, as the bench sets it
    before = root.level, root.handlers[:]
    root.handlers[:] = [shown]
    root.setLevel(logging.WARNING)
    log = get_logger("test.steps")
    try:
        with timed(log, "before the block"):
            pass
        with step_times() as steps:
            with timed(log, "read the day up to 2026-11-21") as facts:
                facts["rows"] = 3
            with timed(log, "write the day"):
                log.warning("a warning is still shown")
        with timed(log, "after the block"):
            pass
        assert [name for name, _ in steps] == ["read the day up to 2026-11-21", "write the day"]
        assert all(seconds >= 0 for _, seconds in steps)
        # The console showed the warning and no step's info line; the levels are as they were.
        err = capsys.readouterr().err
        assert "a warning is still shown" in err and "done in" not in err
        assert root.level == logging.WARNING and shown.level == logging.NOTSET
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
