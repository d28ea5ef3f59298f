"""The main job on two simulated Windows hosts, with one command::

    python -m pyinfra_iis.demo [--hosts 2] [--version 1.0.0] [--workdir DIR] [--keep-running]
    pyinfra-iis demo ...                      (the same, through the console script)

What it does (README, "Quick start"):

1. writes the controller files the hosts need into ``<workdir>/files``: dummy MSIs and a dummy
   python.org installer (the simulator checks their SHA-256 and runs no installer) and a
   self-signed PFX for ``api.example.com`` (the https binding);
2. builds the example app's release (``examples/app`` → ``<workdir>/dist/api-<version>.zip``,
   win_amd64 wheels from PyPI, cached);
   from a checkout the demo uses the checkout's ``inventories/``, ``deploys/`` and
   ``examples/app/``; from an installed wheel, the copy the wheel carries
   (``pyinfra_iis/_project``), copied first into ``<workdir>/project``;
3. starts the simulated hosts in this process (:class:`~pyinfra_iis.sim.SimServer`, state in
   ``<workdir>/hosts/<n>``, kept between runs: a second demo run changes nothing);
4. runs ``pyinfra inventories/sim.py deploys/site.py -y`` as a subprocess;
5. requests ``/healthz`` and ``/info`` through each host's https binding (the simulator serves
   every IIS binding on a loopback port) and prints what the app answered;
6. stops the simulated hosts (their app processes with them).

Secrets (WinRM password, PFX password, the app secret) are generated on the first run, kept in
``<workdir>/secrets.json`` (mode 0600) and passed to pyinfra through its environment; they are
never printed. The default workdir belongs to the user running the demo
(:func:`default_workdir`), so two users of one machine never share hosts or secrets.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from .deploys.release import ENV_ARTIFACT as _ARTIFACT_ENV
from .deploys.release import ENV_VERSION as _VERSION_ENV

#: The project files a wheel carries (``setup.py`` copies them in at build time).
BUNDLE = Path(__file__).resolve().parent / "_project"


def is_project(folder: Path) -> bool:
    """Whether ``folder`` holds what the demo runs: ``inventories/sim.py``, ``deploys/site.py``
    and ``examples/app/main.py``."""

    return all((folder / name).is_file() for name in ("inventories/sim.py", "deploys/site.py", "examples/app/main.py"))


#: Where the demo's inventories, deploys and example app are: the checkout this module lives in,
#: else (an installed wheel) the copy the wheel carries.
PROJECT = Path(__file__).resolve().parent.parent
if not is_project(PROJECT):
    PROJECT = BUNDLE
EXAMPLE_APP = PROJECT / "examples" / "app"
SIM_USER = "Administrator"
#: Seconds one pyinfra run may take (a first run builds the simulator's local venv from PyPI).
DEPLOY_TIMEOUT = 900
#: The https binding of the example site (inventories/group_data/all.py).
HOST_NAME = "api.example.com"


def default_workdir() -> Path:
    """The demo's folder for this user: ``$PYINFRA_IIS_DEMO_DIR``, else
    ``$XDG_CACHE_HOME/pyinfra-iis/demo``, else ``~/.cache/pyinfra-iis/demo`` (beside the wheel
    and simulator venv caches); on Windows ``%LOCALAPPDATA%\\pyinfra-iis\\demo``.

    Never a folder shared by every user of the machine: another user's leftover hosts would
    make a first run print "No changes", and its secrets file would not be readable."""

    explicit = os.environ.get("PYINFRA_IIS_DEMO_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    return Path(base or Path.home() / ".cache") / "pyinfra-iis" / "demo"


def project_for(workdir: Path, source: Path | None = None) -> Path:
    """The folder pyinfra runs in: the checkout itself, or, from an installed wheel, a fresh copy
    of the wheel's project files in ``<workdir>/project`` (site-packages is never written to).

    Raises:
        FileNotFoundError: neither a checkout nor the wheel's copy has the demo's files.
    """

    source = PROJECT if source is None else source
    if not is_project(source):
        raise FileNotFoundError(f"{source} has no inventories/sim.py, deploys/site.py and examples/app/: "
                                "run the demo from a checkout or from a wheel built from one")
    if source != BUNDLE:
        return source
    target = workdir / "project"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    return target


# --- Controller files ------------------------------------------------------------------------


def write_pfx(path: Path, password: str, names: Sequence[str] = (HOST_NAME,), days: int = 365) -> str:
    """Write a self-signed PFX (EC P-256, SAN ``names``, valid from yesterday for ``days``).

    Returns:
        the certificate's SHA-1 thumbprint (40 upper-case hex digits), as Windows shows it.
    """

    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"api", key, cert, None, BestAvailableEncryption(password.encode("utf-8"))))
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def write_sim_files(folder: Path, pfx_password: str, root: Path = PROJECT) -> Path:
    """Write the files ``inventories/sim.py`` expects (``SIM_FILES``) into ``folder``.

    Installers are dummies: the simulator checks their hash, it runs nothing. An existing PFX
    is kept (same thumbprint on every run, so a second run changes nothing) unless its password
    no longer opens it.

    Returns:
        ``folder``.
    """

    folder.mkdir(parents=True, exist_ok=True)
    names = _sim_file_names(root)
    for product in ("HttpPlatformHandler", "UrlRewrite", "ARR", "python"):
        path = folder / names[product]
        if not path.exists():
            path.write_bytes(f"pyinfra-iis demo stand-in for {names[product]}; the simulator checks the SHA-256 only\n".encode())
    pfx = folder / names["pfx"]
    try:
        pkcs12.load_key_and_certificates(pfx.read_bytes(), pfx_password.encode("utf-8"))
    except (OSError, ValueError):
        write_pfx(pfx, pfx_password)
    return folder


def _sim_file_names(root: Path = PROJECT) -> dict[str, str]:
    namespace: dict = {}
    source = (root / "inventories" / "sim.py").read_text(encoding="utf-8")
    exec(compile(source.split("\n_ports = ", 1)[0], "inventories/sim.py", "exec"), namespace)  # the constants only
    return namespace["SIM_FILES"]


def build_artifact(version: str, out: Path, app_dir: Path = EXAMPLE_APP, python: str = "3.12") -> Path:
    """Build ``<out>/api-<version>.zip`` from ``app_dir`` (``pyinfra_iis.release.build_release``;
    wheels cached in the user cache). An existing zip of that name is reused.

    Raises:
        the build's errors (``AppError``, ``LockError``, ``WheelhouseError``...).
    """

    from .release.artifact import build_release

    target = out / f"api-{version}.zip"
    if target.is_file():
        return target
    return build_release(app_dir, version, python, out, name="api").path


# --- Simulated hosts and pyinfra -----------------------------------------------------------------


@dataclass
class Demo:
    """Everything one demo (or end-to-end test) run needs: the work folder, the secrets, the
    simulated hosts (``servers``, started by :meth:`start`)."""

    workdir: Path
    hosts: int = 2
    password: str = field(default_factory=lambda: "Sim-" + secrets.token_urlsafe(12) + "'$")
    pfx_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16) + "'\"$(x)")
    servers: list = field(default_factory=list)
    #: Folder holding ``inventories/`` and ``deploys/`` (pyinfra runs there): the checkout, or
    #: a copy with changed group data (tests).
    root: Path = PROJECT

    @property
    def files(self) -> Path:
        return self.workdir / "files"

    @property
    def dist(self) -> Path:
        return self.workdir / "dist"

    def state_dir(self, index: int) -> Path:
        """State folder of simulated host ``index`` (0-based)."""

        return self.workdir / "hosts" / f"web{index + 1:02d}"

    def start(self) -> "Demo":
        """Start the simulated hosts on free loopback ports (their state persists in the workdir)."""

        write_sim_files(self.files, self.pfx_password, self.root)
        for index in range(self.hosts):
            self.servers.append(self._server(index).start())
        return self

    def _server(self, index: int):
        from .sim import SimServer

        return SimServer(self.state_dir(index), user=SIM_USER, password=self.password, port=0, hostname=f"WEB{index + 1:02d}")

    def stop(self) -> None:
        """Stop every simulated host (binding listeners closed, app processes killed)."""

        while self.servers:
            self.servers.pop().stop()

    def reinstall(self, index: int) -> None:
        """Simulate a freshly installed server in place of host ``index``: stop it, delete its
        state folder, start a new simulated host there (the port may change)."""

        self.servers[index].stop()
        shutil.rmtree(self.state_dir(index))
        self.servers[index] = self._server(index).start()

    def __enter__(self) -> "Demo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def environment(self, version: str | None = None, artifact: Path | None = None, servers: Iterable | None = None) -> dict[str, str]:
        """The environment of a pyinfra run against (some of) the hosts: ports, credentials,
        files, secrets and, when given, the release version and artifact."""

        env = dict(os.environ)
        env.pop(_VERSION_ENV, None)
        env.pop(_ARTIFACT_ENV, None)
        env.update({
            "PYINFRA_IIS_SIM_PORTS": ",".join(str(s.port) for s in (servers if servers is not None else self.servers)),
            "PYINFRA_IIS_SIM_USER": SIM_USER, "PYINFRA_IIS_SIM_PASSWORD": self.password,
            "PYINFRA_IIS_SIM_FILES": str(self.files),
            "API_PFX_PASSWORD": self.pfx_password, "API_SECRET_KEY": self.app_secret,
        })
        if version:
            env[_VERSION_ENV] = version
        if artifact:
            env[_ARTIFACT_ENV] = str(artifact)
        return env

    def pyinfra(self, deploy: str, *args: str, version: str | None = None, artifact: Path | None = None,
                servers: Iterable | None = None, capture: bool = True, timeout: float = DEPLOY_TIMEOUT) -> subprocess.CompletedProcess:
        """Run ``pyinfra inventories/sim.py <deploy> -y <args>`` in :attr:`root`.

        Args:
            deploy: ``deploys/site.py``, ``deploys/release.py`` or ``deploys/rollback.py``.
            args: more pyinfra arguments (``--serial``, ``--fail-percent 0``, ``--diff``...).
            capture: capture stdout/stderr (else they go to this terminal).
            timeout: seconds before the run is killed.
        """

        command = [sys.executable, "-m", "pyinfra", "inventories/sim.py", deploy, "-y", *args]
        return subprocess.run(command, cwd=self.root, env=self.environment(version, artifact, servers),
                              capture_output=capture, text=True, timeout=timeout)

    def secrets(self) -> list[str]:
        """The values that must never appear in any output."""

        return [self.password, self.pfx_password, self.app_secret]


def fetch(server, path: str, protocol: str = "https", port: int = 443, host_name: str = HOST_NAME, site: str = "api",
          headers: Mapping[str, str] | None = None, timeout: float = 10.0) -> tuple[int, str]:
    """GET ``path`` through a simulated host's IIS binding (``protocol``, ``port``, ``host_name``)
    as a client would: TLS with SNI = ``host_name`` for https (the demo certificate is
    self-signed, so it is not verified), ``Host: host_name``.

    Returns:
        ``(status, body text)``.

    Raises:
        LookupError: the host serves no such binding (site not started, no release yet).
        OSError: the connection failed.
    """

    from .sim import apps

    manager = apps.manager_for(server.host)
    loopback = manager.loopback_port(site, protocol, port, host_name) if manager else None
    if loopback is None:
        raise LookupError(f"{server.host.hostname} serves no {protocol} binding on port {port} for {host_name}")
    sock = socket.create_connection(("127.0.0.1", loopback), timeout=timeout)
    if protocol == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname=host_name)
    connection = http.client.HTTPConnection("127.0.0.1", loopback, timeout=timeout)
    connection.sock = sock
    try:
        connection.request("GET", path, headers={"Host": host_name, **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def load_secrets(workdir: Path) -> dict[str, str]:
    """The demo's generated secrets, kept in ``<workdir>/secrets.json`` (mode 0600) so that a
    second run against the same hosts changes nothing; generated on the first run.

    Returns:
        ``{"password", "pfx_password", "app_secret"}`` for :class:`Demo`.
    """

    path = workdir / "secrets.json"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if set(values) == {"password", "pfx_password", "app_secret"}:
            return values
    except (OSError, ValueError):
        pass
    fresh = Demo(workdir)
    values = {"password": fresh.password, "pfx_password": fresh.pfx_password, "app_secret": fresh.app_secret}
    workdir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(values, handle)
    return values


def _masked(text: str, hidden: Iterable[str]) -> str:
    for value in hidden:
        text = text.replace(value, "*MASKED*")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return 0 when every host answered /healthz with 200 through its binding."""

    parser = argparse.ArgumentParser(prog="python -m pyinfra_iis.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2, help="number of simulated hosts (default 2)")
    parser.add_argument("--version", default="1.0.0", help="release version of the example app (default 1.0.0)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="files, artifacts and host state, kept between runs (default: per user, "
                             f"{default_workdir()})")
    parser.add_argument("--keep-running", action="store_true", help="leave the hosts up until Enter is pressed")
    args = parser.parse_args(argv)
    workdir = (args.workdir or default_workdir()).resolve()

    root = project_for(workdir)
    demo = Demo(workdir, hosts=args.hosts, root=root, **load_secrets(workdir))
    print(f"[1/5] building release {args.version} of examples/app (win_amd64 wheels, cached) ...", flush=True)
    artifact = build_artifact(args.version, demo.dist, app_dir=root / "examples" / "app")
    print(f"      {artifact} sha256={hashlib.sha256(artifact.read_bytes()).hexdigest()[:16]}...")
    with demo:
        ports = ", ".join(f"{s.host.hostname} on 127.0.0.1:{s.port}" for s in demo.servers)
        print(f"[2/5] simulated hosts up: {ports} (state in {demo.workdir / 'hosts'})")
        print("[3/5] pyinfra inventories/sim.py deploys/site.py -y", flush=True)
        result = demo.pyinfra("deploys/site.py", version=args.version, artifact=artifact)
        print(_masked(result.stdout + result.stderr, demo.secrets()))
        if result.returncode != 0:
            print(f"pyinfra failed (exit {result.returncode})", file=sys.stderr)
            return 1
        print("[4/5] the app through each host's https binding (Host: api.example.com):")
        healthy = True
        for server in demo.servers:
            status, body = fetch(server, "/healthz")
            info_status, info = fetch(server, "/info")
            healthy &= status == 200
            seen = json.loads(info) if info_status == 200 else {}
            client = seen.get("client") or {}
            print(f"      {server.host.hostname}: /healthz {status} {body.strip()} | /info version={seen.get('version')} "
                  f"client={client.get('host')} scheme={client.get('scheme')} host={seen.get('host')}")
        if args.keep_running:
            for server in demo.servers:
                for entry in _describe(server):
                    print(f"      {server.host.hostname} {entry}")
            input("      hosts are running; press Enter to stop them ")
        print("[5/5] stopping the simulated hosts")
    return 0 if healthy else 1


def _describe(server) -> list[str]:
    from .sim import apps

    manager = apps.manager_for(server.host)
    return [f"{e.get('protocol')} {e.get('binding')} -> {e.get('loopback')}" for e in (manager.describe() if manager else []) if "binding" in e]


if __name__ == "__main__":
    sys.exit(main())
