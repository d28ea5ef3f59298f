"""The whole server: ``pyinfra inventories/prod.py deploys/site.py``.

1. IIS (features, extensions, server configuration, certificates, pools, sites, ACLs) from the
   host's ``iis_*`` data; each release's app secrets join its pool's environment variables and
   each release site keeps serving the release the host serves now (``iis_overrides``).
2. The release(s) from the host's ``release_*`` data (``release_app`` or ``release_apps``):
   Python, ACLs (root RX, logs Modify, base Python RX), app secrets, install, config revision,
   health-checked switch, old releases removed (``pyinfra_iis.deploys.release``). The version
   comes from ``--data release_version=...`` or ``$PYINFRA_IIS_RELEASE_VERSION``; without one
   the host keeps what it serves.
"""

from pyinfra_iis.deploys.iis import configure_iis
from pyinfra_iis.deploys.release import iis_overrides, release_all, release_targets

targets = release_targets()
configure_iis(**iis_overrides(targets))

# --- Release steps: pyinfra_iis.deploys.release -------------------------------------------
release_all(targets=targets)
