"""IIS extensions installed from MSI packages: HttpPlatformHandler, URL Rewrite, ARR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, PlainValidator
from pydantic_core import PydanticCustomError

from .types import show
from .base import IisModel
from .types import Sha256Hex, _controller_path, _fail, _unc_path, _common_path_checks

Product = Literal["HttpPlatformHandler", "UrlRewrite", "ARR"]

#: Install order: URL Rewrite before ARR (docs/field-facts.md, "URL Rewrite 2.1 and ARR 3.0" [R]).
INSTALL_ORDER: tuple[str, ...] = ("HttpPlatformHandler", "UrlRewrite", "ARR")


class HttpsSource(str):
    """An ``https://`` URL the host downloads the MSI from."""


class UncSource(str):
    """A UNC path ``\\\\server\\share\\file.msi`` the host reads."""


def _source(value: Any) -> Any:
    if isinstance(value, Path):
        return _controller_path(value)
    if not isinstance(value, str):
        raise _fail("msi_source", "an MSI source is a controller file path, an https:// URL or a UNC path")
    lowered = value.strip().lower()
    if lowered.startswith("http://"):
        raise _fail("msi_source", "plain http:// is refused for installers; use https://, a UNC path or a file on the controller")
    if lowered.startswith("https://"):
        from urllib.parse import urlsplit

        text = value.strip()
        parts = urlsplit(text)
        if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in text) or "'" in text or '"' in text:
            raise _fail("msi_source", "{url} is not a valid https URL", url=show(value))
        return HttpsSource(text)
    if value.startswith("\\\\") or value.startswith("//"):
        return UncSource(_unc_path(_common_path_checks(value)))
    return _controller_path(value)


#: Where an MSI comes from: a controller file (uploaded to the host, as ``pathlib.Path``), an
#: ``https://`` URL (:class:`HttpsSource`) or a UNC path (:class:`UncSource`).
MsiSource = Annotated[Union[HttpsSource, UncSource, Path], PlainValidator(_source)]


class MsiExtension(IisModel):
    """One entry of host data ``iis_extensions``.

    Attributes:
        product: ``"HttpPlatformHandler"`` (1.2), ``"UrlRewrite"`` (2.1) or ``"ARR"`` (3.0).
        source: controller path, https URL or UNC path (:data:`MsiSource`). Microsoft has
            delisted the ARR download, so operators supply (vendor) the MSI (docs/field-facts.md [R]).
        sha256: required SHA-256 of the MSI; the host refuses a package whose hash differs.
    """

    product: Product
    source: MsiSource = Field(description="Controller file path, https:// URL or UNC path of the .msi.")
    sha256: Sha256Hex = Field(description="SHA-256 of the .msi (required: pins the vendored installer).")


def _check_extension_set(extensions: list[MsiExtension]) -> list[MsiExtension]:
    products = [e.product for e in extensions]
    duplicates = sorted({p for p in products if products.count(p) > 1})
    if duplicates:
        raise PydanticCustomError("extensions", "product {names} is listed more than once", {"names": ", ".join(duplicates)})
    if "ARR" in products and "UrlRewrite" not in products:
        raise PydanticCustomError("extensions", "ARR needs URL Rewrite: add a UrlRewrite entry (it is installed before ARR)")
    return extensions


def in_install_order(extensions: list[MsiExtension]) -> list[MsiExtension]:
    """Return ``extensions`` sorted in :data:`INSTALL_ORDER` (URL Rewrite before ARR)."""

    return sorted(extensions, key=lambda e: INSTALL_ORDER.index(e.product))


#: The list in ``iis_extensions``: each product at most once, URL Rewrite present whenever ARR
#: is (kept in inventory order so error paths match; see :func:`in_install_order`).
MsiExtensionList = Annotated[list[MsiExtension], AfterValidator(_check_extension_set)]
