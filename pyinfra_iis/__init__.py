"""pyinfra-iis: provision IIS on Windows Server and ship FastAPI releases over WinRM, with pyinfra 3."""

__version__ = "0.1.0"
