"""Python-side knowledge of IIS configuration.

* :mod:`.config` navigates the ELEMENT JSON that ``Get-HostState`` reports
  (``docs/remote-functions.md``) and computes effective attribute values;
* :mod:`.defaults` holds the IIS schema defaults of every attribute the project manages;
* :mod:`.edits` builds the EDIT objects of ``Set-IisConfig``;
* :mod:`.diff` renders attribute-level before/after lines for ``--diff``;
* :mod:`.appconfig` parses (and, for the simulator, edits) applicationHost.config: the fact's
  ``sections``/``locations`` are parsed from the text the host sends;
* :mod:`.httpsys` parses HTTP.sys's SSL bindings (``netsh http show sslcert``) and computes a
  binding's endpoint.
"""
