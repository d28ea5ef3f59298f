"""The pyinfra side of the doctor: ``pyinfra INVENTORY deploys/doctor.py``.

One operation per host, ``doctor``, whose ``FunctionCommand`` reads the host (one
``Get-HostState`` and one ``Get-DoctorState``, plus ``Get-AppServiceState`` in ARR mode, all read-only: the ``@winrm`` connector keeps its
fact cache, nothing on the host changes), runs every check (:func:`pyinfra_iis.doctor.run_checks`),
prints the host's table and returns ``False`` when a check failed, so pyinfra reports the host
as failed and exits non-zero.

Host data (``--data`` on the command line):

* ``doctor_format``: ``table`` (default) or ``json`` (one JSON line per host on stdout, prefixed
  by nothing: ``{"host", "ok", "counts", "checks"}``);
* ``doctor_output``: a file that receives every host's report as one JSON document
  ``{"hosts": {name: report}}`` (hosts add themselves as they finish; the file is rewritten
  whole each time). A ``{host}`` in the path gives one file per host instead (the host's name with
  characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``).

Example::

    pyinfra inventories/prod.py deploys/doctor.py --data doctor_format=json --data doctor_output=doctor.json
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from pyinfra import host as current_host
from pyinfra import logger
from pyinfra.api import FunctionCommand, operation

from ..facts.host_state import host_data_dict
from ..operations._common import ReleaseStepError, call_host
from . import failed, render_json, render_table, run_checks
from .evidence import gather, target_from_host_data
from .model import Target

FORMATS = ("table", "json")


def _write_output(path_text: str, name: str, report: dict[str, Any]) -> None:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "host"  # @winrm/127.0.0.1:5985 -> winrm_127.0.0.1_5985
    path = Path(path_text.replace("{host}", safe))
    if "{host}" in path_text:
        document: dict[str, Any] = report
    else:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document.get("hosts"), dict):
                raise ValueError
        except (OSError, ValueError, AttributeError):
            document = {"hosts": {}}
        document["hosts"][name] = report
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def run_doctor(state: Any, host: Any, target: Target, output_format: str = "table", output: str | None = None) -> bool:
    """The ``FunctionCommand`` body: read, check, print; ``False`` when a check failed (pyinfra
    passes ``state`` and ``host`` by these names)."""

    host_ = host

    def call(function: str, payload: dict) -> dict:
        return call_host(host_, function, payload)

    try:
        checks = run_checks(gather(call, target))
    except ReleaseStepError as exc:
        host_.log(f"doctor cannot read the host: {exc}", logger.error)
        return False
    except Exception as exc:  # noqa: BLE001 - an unreadable answer: this host fails, the others go on
        host_.log(f"doctor: {type(exc).__name__}: {exc}", logger.error)
        return False
    line = render_json(host_.name, checks)
    if output_format == "json":
        sys.stdout.write(line + "\n")
    else:
        sys.stdout.write(render_table(host_.name, checks) + "\n")
    sys.stdout.flush()
    if output:
        _write_output(output, host_.name, json.loads(line))
    bad = failed(checks)
    if bad:
        host_.log(f"doctor: {len(bad)} check(s) failed: {', '.join(c.check for c in bad)}", logger.error)
    return not bad


@operation(is_idempotent=False)
def doctor(output_format: str | None = None, output: str | None = None):
    """Diagnose the host (read-only); fail the host when a check fails.

    Args:
        output_format: ``table`` or ``json``; default the host data ``doctor_format``, else ``table``.
        output: a JSON file for every host's report (``{host}`` for one file per host); default
            the host data ``doctor_output``.

    Raises:
        OperationValueError: an unknown format.
        InventoryError: the host's ``iis_*`` / ``release_*`` data does not validate (before any
            command runs).

    Example::

        from pyinfra_iis.doctor.deploy import doctor
        doctor(name="Doctor")
    """

    from pyinfra.api.exceptions import OperationValueError

    chosen = str(output_format or current_host.data.get("doctor_format") or "table").lower()
    if chosen not in FORMATS:
        raise OperationValueError(f"doctor_format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    target_file = output or current_host.data.get("doctor_output") or None
    # The inventory is validated here, before any command runs (InventoryError names host and field).
    target = target_from_host_data(current_host.name, host_data_dict(current_host))
    yield FunctionCommand(run_doctor, (), {"target": target, "output_format": chosen, "output": str(target_file) if target_file else None})
