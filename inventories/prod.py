"""Example fleet: two IIS hosts reached over WinRM/HTTPS.

    pyinfra inventories/prod.py deploys/site.py

Everything both hosts share is in ``group_data/all.py``; host-specific values go here. The
connector reads ``winrm_*`` keys; secrets come from the environment, never from this file.
"""

import os

web_servers = [
    ("@winrm/web01.example.com", {"winrm_user": os.environ.get("WINRM_USER", "deploy"),
                                  "winrm_password": os.environ.get("WINRM_PASSWORD", "")}),
    ("@winrm/web02.example.com", {"winrm_user": os.environ.get("WINRM_USER", "deploy"),
                                  "winrm_password": os.environ.get("WINRM_PASSWORD", "")}),
]
