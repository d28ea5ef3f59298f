"""The applicationHost.config parser lives in :mod:`pyinfra_iis.iis.appconfig`, shared by the
controller (``facts/iis_state.py`` parses the text the host reports) and the simulator (which
keeps and edits the file). This module re-exports it for the simulator's imports."""

from ...iis.appconfig import *  # noqa: F401,F403
from ...iis.appconfig import (  # noqa: F401 - names used by the simulator and its tests
    APPHOST_CONFIG_PATH,
    HTTP_SYS_BINDING_ATTRIBUTES,
    AppHostConfig,
    ConfigError,
    SectionNotFoundError,
    binding_endpoint,
    edit_file,
    element_json,
    first_child,
    real_children,
)
