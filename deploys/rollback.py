"""Go back one release: ``pyinfra inventories/prod.py deploys/rollback.py``.

Switches each host's site to the release state's ``previous`` release (still installed, health
checked through the binding like any switch). Running it again goes forward again: a switch
makes the current release the previous one.
"""

from pyinfra_iis.deploys.release import rollback_release

rollback_release()
