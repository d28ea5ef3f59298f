"""Python-side knowledge of IIS configuration.

* :mod:`.config` navigates the ELEMENT JSON that ``Get-HostState`` reports
  (``docs/remote-functions.md``) and computes effective attribute values;
* :mod:`.defaults` holds the IIS schema defaults of every attribute the project manages;
* :mod:`.edits` builds the EDIT objects of ``Set-IisConfig``;
* :mod:`.diff` renders attribute-level before/after lines for ``--diff``.
"""
