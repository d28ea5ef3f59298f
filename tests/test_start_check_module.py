"""The start check's limits on the host (Assert-ReleaseStart, remote/PyinfraIis/92-release-health.ps1)
against what the controller sends (pyinfra_iis.release.startcheck.start_check)."""

from __future__ import annotations

import re

from pyinfra_iis.models.release import ReleaseSettings
from pyinfra_iis.release.startcheck import start_check
from pyinfra_iis.remote import read_remote_file
from test_remote_contract import function_bodies


def test_the_longest_start_check_the_model_allows_is_accepted_by_the_host():
    # startup_time_limit may be 3600 s: the controller then sends 2 x 3600 + 30 s, which a maximum of
    # 7200 refused on every switch ('"timeout_seconds" must be between 1 and 7200'); the simulator ran it.
    body = function_bodies(read_remote_file("PyinfraIis/92-release-health.ps1"))["Assert-ReleaseStart"]
    assert "Invoke-CallProgram -Call $Check" in body  # the check runs through the program runner's reader (part 15)
    runner = function_bodies(read_remote_file("PyinfraIis/15-programs.ps1"))["Invoke-CallProgram"]
    maximum = int(re.search(r"-Name 'timeout_seconds' [^\n]*-Maximum (\d+)", runner).group(1))
    settings = ReleaseSettings.model_validate({"app_name": "api", "root": "C:\\sites\\api", "startup_time_limit": 3600,
                                               "health_deadline": 7200})
    assert start_check(settings, "2.0.0")["timeout_seconds"] <= maximum
