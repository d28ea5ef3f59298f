"""The whole server: ``pyinfra inventories/prod.py deploys/site.py``.

1. IIS (features, extensions, server configuration, certificates, pools, sites, ACLs) from the
   host's ``iis_*`` data; the release's app secrets join its pool's environment variables and
   the site keeps serving the release the host serves now (``iis_overrides``).
2. The release from the host's ``release_*`` data: Python, ACLs (root RX, logs Modify, base
   Python RX), app secrets, install, health-checked switch, old releases removed
   (``pyinfra_iis.deploys.release``). The version comes from ``--data release_version=...`` or
   ``$PYINFRA_IIS_RELEASE_VERSION``; without one the host keeps what it serves.
"""

from pyinfra_iis.deploys.iis import configure_iis
from pyinfra_iis.deploys.release import iis_overrides, release_app, release_target

target = release_target()
configure_iis(**iis_overrides(target))

# --- Release steps: pyinfra_iis.deploys.release -------------------------------------------
release_app(target=target)
