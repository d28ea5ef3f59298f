"""Group data of every host: the IIS configuration of the worked example and its release
settings.

Secrets (PFX password, app secrets) are read from environment variables and wrapped in
``pyinfra_iis.Secret`` (masked by ``debug-inventory``), and an unset one is an error (never a
placeholder); the MSIs, the Python installer and the PFX are vendored under
``files/`` and pinned by SHA-256 (an unset pin is reported by the inventory check) (Microsoft has delisted
the ARR download, docs/field-facts.md). Keys: ``pyinfra_iis.models.HOST_DATA_KEYS`` (``iis_*``) and
``pyinfra_iis.deploys.release`` (``release_*``). The release version and artifact are not set
here: a pipeline gives them with ``--data release_version=1.4.2`` or
``PYINFRA_IIS_RELEASE_VERSION`` / ``PYINFRA_IIS_RELEASE_ARTIFACT``.
"""

import os

from pyinfra_iis import Secret


def _secret(name: str) -> Secret:
    """The value of the environment variable ``name``, wrapped in :class:`pyinfra_iis.Secret`
    (``pyinfra ... debug-inventory`` shows ``*MASKED*``); a clear error when it is unset, never
    a made-up default (a placeholder password would be deployed as the real one)."""

    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"inventories/group_data/all.py: set the environment variable {name} (a secret; never put it in this file)")
    return Secret(value)


winrm_scheme = "https"
winrm_transport = "ntlm"

iis_features = {"extra": []}  # the default set of the models, plus Web-AppInit

iis_extensions = [
    {"product": "HttpPlatformHandler", "source": "files/httpPlatformHandler_amd64.msi",
     "sha256": os.environ.get("HPH_MSI_SHA256")},
    {"product": "UrlRewrite", "source": "files/rewrite_amd64_en-US.msi",
     "sha256": os.environ.get("REWRITE_MSI_SHA256")},
    {"product": "ARR", "source": "files/requestRouter_amd64.msi",
     "sha256": os.environ.get("ARR_MSI_SHA256")},
]

iis_server = {
    "proxy": {"timeout": "00:02:00", "preserve_host_header": True},
    "allowed_server_variables": ["HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"],
    "max_allowed_content_length": 50_000_000,
}

iis_certificates = [
    {"name": "api", "pfx": "files/api.example.com.pfx", "password": _secret("API_PFX_PASSWORD"),
     "store": "WebHosting"},
]

# The app's secrets are release_app["app_secrets"]: the deploys add them to this pool's
# environment variables (applicationHost.config), never to web.config.
iis_app_pools = [
    {"name": "api"},
]

iis_sites = [
    {"name": "api", "physical_path": r"C:\sites\api\current", "app_pool": "api",
     "log_directory": r"C:\sites\api\iislogs",
     "bindings": [
         {"protocol": "https", "port": 443, "host_name": "api.example.com", "certificate": "api"},
         {"protocol": "http", "port": 80, "host_name": "api.example.com"},
     ]},
]

# The pool's access to the release root (RX), its logs folder (Modify) and the base Python (RX)
# comes from the release settings below (pyinfra_iis.deploys.release.acl_rules).
iis_acls = []

release_app = {
    "app_name": "api",
    "root": r"C:\sites\api",
    "python_version": "3.12",
    "keep_releases": 5,
    "health_check_path": "/healthz",
    "health_deadline": "2m",
    "app_settings": {"LOG_LEVEL": "info"},
    "app_secrets": {"API_SECRET_KEY": _secret("API_SECRET_KEY")},
}
release_site = "api"
release_python = {
    "version": "3.12.7",
    "source": "files/python-3.12.7-amd64.exe",
    "sha256": os.environ.get("PYTHON_INSTALLER_SHA256"),
}
