"""IIS extensions from MSI packages (HttpPlatformHandler, URL Rewrite, ARR): ``Install-MsiProduct``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from ..facts.host_state import host_state
from ..iis.diff import Change, log_changes
from ..models.extensions import MsiExtension
from ..protocol import remote_call
from ._common import controller_file, from_arguments, refuse_absent

#: Where controller MSIs are uploaded before ``Install-MsiProduct`` copies them into
#: ``C:\\ProgramData\\pyinfra-iis\\msi\\`` (docs/remote-functions.md).
UPLOAD_DIR = r"C:\ProgramData\pyinfra-iis\uploads"



@operation()
def msi_extension(
    extension: MsiExtension | dict | None = None,
    *,
    present: bool = True,
    product: Literal["HttpPlatformHandler", "UrlRewrite", "ARR"] | None = None,
    source: str | Path | None = None,
    sha256: str | None = None,
):
    """
    Install an IIS extension from its MSI unless the host already has it.

    + present: must be ``True`` (uninstalling is not implemented; ``False`` is refused).
    + product: ``HttpPlatformHandler``, ``UrlRewrite`` or ``ARR`` (required).
    + source: a controller file, an ``https://`` URL or a UNC path of the ``.msi`` (required).
    + sha256: the MSI's SHA-256 (required; the host refuses another file).
    + extension: instead of the keywords, an ``MsiExtension`` model or dict (host data
      ``iis_extensions`` entry). Giving both is an error.

    Detection comes from ``Get-HostState`` (module / registry, docs/field-facts.md: detection is safer
    than product codes), so an installed product is skipped without uploading anything. A
    controller file is uploaded (``FileUploadCommand``; the upload creates missing folders, streamed and hash-checked by the
    connector) only when the product is missing; the host checks the SHA-256 before msiexec.
    Install URL Rewrite before ARR (docs/field-facts.md): the ``Configure IIS`` deploy orders them.

    **Example:**

    .. code:: python

        msi_extension(name="URL Rewrite 2.1", product="UrlRewrite",
                      source="files/rewrite_amd64_en-US.msi", sha256="...")
    """

    refuse_absent(present, "msi_extension")
    model = from_arguments(MsiExtension, extension, "extension", {"product": product, "source": source, "sha256": sha256})
    detected = (host_state(host).get("extensions") or {}).get(model.product) or {}
    if detected.get("installed"):
        host.noop(f"{model.product} is installed (version {detected.get('version')})")
        return
    source: str
    if isinstance(model.source, Path):
        local = controller_file(model.source, "extension", "source")
        source = UPLOAD_DIR + "\\" + local.name
        log_changes(host, f"Will install {model.product}", [Change(model.product, "absent", f"installed from {local.name}")])
        yield FileUploadCommand(str(local), source)
    else:
        source = str(model.source)
        log_changes(host, f"Will install {model.product}", [Change(model.product, "absent", f"installed from {source}")])
    yield remote_call("Install-MsiProduct", {"product": model.product, "source": source, "sha256": model.sha256})
