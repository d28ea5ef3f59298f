"""pyinfra operations for IIS hosts.

One module per concern; each operation reads :func:`pyinfra_iis.facts.host_state.host_state`,
compares it with the validated model and yields the smallest set of remote calls
(``docs/remote-functions.md``), or nothing (``host.noop``).
"""
