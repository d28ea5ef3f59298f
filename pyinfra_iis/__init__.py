"""pyinfra-iis: provision IIS on Windows Server and ship FastAPI releases over WinRM, with pyinfra 3."""

__version__ = "0.1.0"

__all__ = ["Secret", "__version__"]


def __getattr__(name: str):
    # ``pyinfra_iis.Secret``, the type inventories wrap secrets in (masked by debug-inventory),
    # imported on first use so that ``import pyinfra_iis`` stays light.
    if name == "Secret":
        from .protocol import Secret

        return Secret
    raise AttributeError(f"module 'pyinfra_iis' has no attribute {name!r}")
