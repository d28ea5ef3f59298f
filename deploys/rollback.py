"""Go back to an earlier release: ``pyinfra inventories/prod.py deploys/rollback.py``.

``--data release_version=1.0.0`` switches each host's site to that installed release (its
newest config revision; ``1.0.0+r1`` for its first configuration, ``1.0.0+r2`` exactly that
revision); a release that is not installed and complete is refused before anything changes.
Without a version, the release state's ``previous``; running it again (a retried pipeline job)
changes nothing: release-state.json records what the rollback went back from, and an unnamed
rollback after a rollback stays there. Health-checked through the binding like any switch.
``$PYINFRA_IIS_RELEASE_VERSION`` is not read (the release job's version is not a rollback
target). Several apps (``release_apps``): each rolls back, or the one named by ``--data
release_only=<app_name>`` (required with a version).
"""

from pyinfra_iis.deploys.release import rollback_release

rollback_release()
