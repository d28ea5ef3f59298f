"""A simulated Windows Server 2022 host that speaks WinRM (docs/design.md, "The simulator").

Python API::

    from pyinfra_iis.sim import SimServer

    with SimServer(state_dir, user="admin", password="secret", port=0, allow_unencrypted=True,
                   max_envelope_kb=500) as sim:
        sim.url                      # "http://127.0.0.1:PORT/wsman"
        sim.host.counters            # {"http_requests": n, "shells": n, "processes": n, ...}
        sim.faults.latency = 0.02    # seconds per request
        sim.faults.drop_after(3); sim.faults.kill_worker()
        sim.faults.fail_function("Set-IisConfig", times=1)
        sim.restart()                # the WinRM service restarts: all shells are lost

Command line: ``python -m pyinfra_iis.sim serve|show`` (see ``__main__``).

Modules, one concern each: ``soap`` (WS-Management envelopes and faults), ``auth`` (Basic,
NTLM, message encryption), ``server`` (HTTP listener, dispatch), ``shell`` (WinRS shells and
commands), ``process`` (simulated processes), ``plain`` (plain commands and a PowerShell
mini-language), ``worker`` (the pyinfra-iis worker protocol), ``functions/`` (Python twins of
the module's functions), ``host`` (host model and file system), ``faults`` (fault injection).
"""

from .faults import Faults
from .functions import SimFunctionError, sim_function
from .host import SimHost, SimPathError
from .server import SimServer

__all__ = ["Faults", "SimFunctionError", "SimHost", "SimPathError", "SimServer", "sim_function"]
