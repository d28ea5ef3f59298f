"""Local simulated hosts (``python -m pyinfra_iis.sim serve``) for the demo and the tests.

    PYINFRA_IIS_SIM_PORTS=5985,5986 pyinfra inventories/sim.py deploys/site.py

Ports from ``PYINFRA_IIS_SIM_PORTS`` (comma-separated; default two hosts on 55985 and 55986);
user and password from ``PYINFRA_IIS_SIM_USER`` / ``PYINFRA_IIS_SIM_PASSWORD`` (the values the
simulator was started with). Plain HTTP on loopback with NTLM message encryption; the IIS data
comes from ``group_data/all.py`` (override with ``--data`` or a group_data directory).
"""

import os

_ports = [p.strip() for p in os.environ.get("PYINFRA_IIS_SIM_PORTS", "55985,55986").split(",") if p.strip()]

sim_hosts = [
    (f"@winrm/127.0.0.1:{port}", {
        "winrm_scheme": "http",
        "winrm_transport": "ntlm",
        "winrm_user": os.environ.get("PYINFRA_IIS_SIM_USER", "Administrator"),
        "winrm_password": os.environ.get("PYINFRA_IIS_SIM_PASSWORD", ""),
    })
    for port in _ports
]
