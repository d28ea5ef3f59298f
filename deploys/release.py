"""Only the release steps, for pipelines: ``pyinfra inventories/prod.py deploys/release.py``.

Python, ACLs, app secrets, install, config revision, health-checked switch and pruning of the
version given by ``--data release_version=1.4.2`` (or ``$PYINFRA_IIS_RELEASE_VERSION``) and the
artifact given by ``--data release_artifact=dist/api-1.4.2.zip`` (or
``$PYINFRA_IIS_RELEASE_ARTIFACT``, default ``dist/<app>-<version>.zip``). IIS itself is left as
it is (deploys/site.py converges it). A host with several apps (``release_apps``) releases each;
``--data release_only=<app_name>`` limits the run to one of them (needed with a version).

The same version with changed ``app_settings`` ships as a config revision ``<version>+r<N>``
(switched and health-checked like a release); unchanged, nothing happens.

Roll host by host and stop at the first failing host::

    pyinfra inventories/prod.py deploys/release.py -y --serial --fail-percent 0

(see README.md, "Pipelines", for a canary first and batches).
"""

from pyinfra_iis.deploys.release import release_all

release_all()
