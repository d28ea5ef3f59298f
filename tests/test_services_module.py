"""Static checks of the ARR mode's service primitives (remote/PyinfraIis/95-services.ps1) that the
simulator cannot show (it has no service control manager): startup types and bounded waits."""

from __future__ import annotations

from pyinfra_iis.remote import read_remote_file
from test_remote_contract import code_without_strings_and_comments, function_bodies

BODIES = function_bodies(read_remote_file("PyinfraIis/95-services.ps1"))


def test_a_stopped_slot_is_disabled_so_no_reboot_or_failure_restart_runs_it():
    # The XML says <startmode>Automatic</startmode> and <onfailure action="restart">: a slot that was merely
    # stopped would start again at the next boot, and a crashed new slot would be restarted by the SCM
    # after the controller "stopped" it (it is Stopped during the restart delay).
    stop = code_without_strings_and_comments(BODIES["Stop-AppService"])
    assert stop.index("Set-Service -Name $name -StartupType Disabled") < stop.index("$service.Stop()")
    start = code_without_strings_and_comments(BODIES["Start-AppService"])
    assert start.index("Set-Service -Name $name -StartupType Automatic") < start.index("$service.Start()")


def test_start_and_stop_wait_for_their_state_with_a_limit():
    # 5.1's Start-Service/Stop-Service loop forever while the service stays pending (DoWaitForStatus).
    for function, target in (("Start-AppService", "Running"), ("Stop-AppService", "Stopped")):
        code = code_without_strings_and_comments(BODIES[function])
        assert "Start-Service" not in code and "Stop-Service" not in code, function
        assert f"WaitForStatus('{target}', [TimeSpan]::FromSeconds(" in BODIES[function], function
