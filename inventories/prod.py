"""Example fleet: two IIS hosts reached over WinRM/HTTPS.

    pyinfra inventories/prod.py deploys/site.py                       # converge everything
    PYINFRA_IIS_RELEASE_VERSION=1.4.2 \\
        pyinfra inventories/prod.py deploys/release.py -y --serial --fail-percent 0

Everything both hosts share is in ``group_data/all.py`` (IIS and release settings); host-specific
values go here. The connector reads ``winrm_*`` keys. Secrets come from the environment, never
from this file: ``WINRM_USER`` / ``WINRM_PASSWORD`` (the deploy account), ``API_PFX_PASSWORD``
and ``API_SECRET_KEY`` (read by group data), installer pins ``*_SHA256``. Secrets are wrapped in
``pyinfra_iis.Secret``: ``pyinfra inventories/prod.py debug-inventory`` shows ``*MASKED*``.
"""

import os

from pyinfra_iis import Secret

if not os.environ.get("WINRM_PASSWORD"):
    raise SystemExit("inventories/prod.py: set the environment variable WINRM_PASSWORD (the deploy account's password; never put it in this file)")

_credentials = {"winrm_user": os.environ.get("WINRM_USER", "deploy"), "winrm_password": Secret(os.environ["WINRM_PASSWORD"])}

web_servers = [
    ("@winrm/web01.example.com", dict(_credentials)),
    ("@winrm/web02.example.com", dict(_credentials)),
]
