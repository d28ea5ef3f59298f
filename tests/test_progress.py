"""Progress lines of long steps (issue 11 "progress"): bytes uploaded, timed host steps."""

from __future__ import annotations

from pyinfra_iis.operations.progress import INTERVAL_SECONDS, UploadProgress, timed_step


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_upload_progress_logs_at_most_every_interval_and_the_end_of_a_long_upload():
    clock, lines = Clock(), []
    progress = UploadProgress("C:\\sites\\api\\artifacts\\api-2.0.0.zip", 40_000_000, "[web01] ", lines.append, clock)
    progress(10_000_000)
    assert lines == []  # nothing within the first interval
    clock.now += INTERVAL_SECONDS
    progress(10_000_000)
    clock.now += 0.5
    progress(10_000_000)
    clock.now += 0.5
    progress(10_000_000)  # the last chunk of an upload that took more than the interval
    assert lines == ["[web01] uploading C:\\sites\\api\\artifacts\\api-2.0.0.zip: 20.0 of 40.0 MB (50%)",
                     "[web01] uploading C:\\sites\\api\\artifacts\\api-2.0.0.zip: 40.0 of 40.0 MB (100%)"]


def test_a_short_upload_prints_nothing_and_an_unknown_size_shows_the_count():
    clock, lines = Clock(), []
    quick = UploadProgress("C:\\x.zip", 1000, "", lines.append, clock)
    quick(1000)
    assert lines == []
    stream = UploadProgress("C:\\y.zip", None, "", lines.append, clock)
    clock.now += 3
    stream(5_500_000)
    assert lines == ["uploading C:\\y.zip: 5.5 MB"]


def test_timed_step_logs_start_and_seconds_or_the_failure():
    clock, logged = Clock(), []

    class Host:
        def log(self, message, log_function):
            logged.append(message)

    with timed_step(Host(), "release 2.0.0: install the wheels", clock):
        clock.now += 12.34
    try:
        with timed_step(Host(), "release 2.0.0: create the venv", clock):
            clock.now += 1
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert logged == ["release 2.0.0: install the wheels...", "release 2.0.0: install the wheels: done in 12.3 s",
                      "release 2.0.0: create the venv...", "release 2.0.0: create the venv: failed after 1.0 s"]
    with timed_step(object(), "silent"):  # a test double without log()
        pass
