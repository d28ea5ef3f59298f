"""Group data of every host: the IIS configuration of the worked example (issue 3).

Secrets (PFX password, app secrets) are read from environment variables; the MSIs and the PFX
are vendored under ``files/`` and pinned by SHA-256 (Microsoft has delisted the ARR download,
field notes). Keys: see ``pyinfra_iis.models.HOST_DATA_KEYS``.
"""

import os

winrm_scheme = "https"
winrm_transport = "ntlm"

iis_features = {"extra": []}  # the default set of the models, plus Web-AppInit

iis_extensions = [
    {"product": "HttpPlatformHandler", "source": "files/httpPlatformHandler_amd64.msi",
     "sha256": os.environ.get("HPH_MSI_SHA256", "0" * 64)},
    {"product": "UrlRewrite", "source": "files/rewrite_amd64_en-US.msi",
     "sha256": os.environ.get("REWRITE_MSI_SHA256", "0" * 64)},
    {"product": "ARR", "source": "files/requestRouter_amd64.msi",
     "sha256": os.environ.get("ARR_MSI_SHA256", "0" * 64)},
]

iis_server = {
    "proxy": {"timeout": "00:02:00", "preserve_host_header": True},
    "allowed_server_variables": ["HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST"],
    "max_allowed_content_length": 50_000_000,
}

iis_certificates = [
    {"name": "api", "pfx": "files/api.example.com.pfx", "password": os.environ.get("API_PFX_PASSWORD", ""),
     "store": "WebHosting"},
]

iis_app_pools = [
    {"name": "api", "environment_variables": {
        "PYTHONUNBUFFERED": "1",
        "API_SECRET_KEY": os.environ.get("API_SECRET_KEY", "change-me"),
    }},
]

iis_sites = [
    {"name": "api", "physical_path": r"C:\sites\api\current", "app_pool": "api",
     "log_directory": r"C:\sites\api\logs",
     "bindings": [
         {"protocol": "https", "port": 443, "host_name": "api.example.com", "certificate": "api"},
         {"protocol": "http", "port": 80, "host_name": "api.example.com"},
     ]},
]

iis_acls = [
    {"path": r"C:\sites\api", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"},
    {"path": r"C:\sites\api\logs", "principal": "IIS AppPool\\api", "rights": "Modify"},
    {"path": r"C:\Python312", "principal": "IIS AppPool\\api", "rights": "ReadAndExecute"},
]
