"""The whole server: ``pyinfra inventories/prod.py deploys/site.py``.

1. IIS (features, extensions, server configuration, certificates, pools, sites, ACLs) from the
   host's ``iis_*`` data.
2. The release steps (build, upload, venv, switch, health check) come here with the release
   issue.
"""

from pyinfra_iis.deploys.iis import configure_iis

configure_iis()

# --- Release steps (a later issue) go below: pyinfra_iis.deploys.release ---------------------
