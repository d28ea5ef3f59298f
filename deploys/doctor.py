"""Why requests fail although the site runs: ``pyinfra inventories/prod.py deploys/doctor.py``.

Read-only: each host is read (one ``Get-HostState``, one ``Get-DoctorState``) and checked on the
controller; one table per host (check, status, evidence, fix), the host failed (and pyinfra's
exit code non-zero) when a check fails. ``--data doctor_format=json`` prints JSON lines,
``--data doctor_output=doctor.json`` writes every host's report to a file (docs/doctor.md).
"""

from pyinfra_iis.doctor.deploy import doctor

doctor(name="Doctor")
