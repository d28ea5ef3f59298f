"""Replay recorded WinRS conversations with real Windows servers through WinRSShell.

The recordings (``tests/data/winrs-recordings/*.yml``, pypsrp's test data) hold the
request each real client sent and the response the real server gave. A fake HTTP transport
under pywinrm's ``Protocol`` answers each request with the recorded response, after checking
that our request has the same WS-Management action, the same body shape and the same
content (command line, stdin, environment, shell and command ids).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from winrm.protocol import Protocol

from pyinfra_iis.transport.winrs import SIGNAL_CTRL_C, WinRSShell

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}


def _action(root: ET.Element) -> str:
    return root.find("s:Header/wsa:Action", NS).text.strip()


def _body_shape(root: ET.Element) -> list[str]:
    body = root.find("s:Body", NS)
    return [child.tag for child in body] if body is not None else []


def _selector(root: ET.Element) -> str | None:
    node = root.find("s:Header/wsman:SelectorSet/wsman:Selector", NS)
    return node.text if node is not None else None


def _options(root: ET.Element) -> dict[str, str]:
    return {o.get("Name"): o.text.upper() for o in root.findall("s:Header/wsman:OptionSet/wsman:Option", NS)}


def _content(root: ET.Element) -> dict:
    body = root.find("s:Body", NS)
    found: dict = {}
    command = body.find("rsp:CommandLine/rsp:Command", NS)
    if command is not None:
        found["command"] = command.text
        found["arguments"] = " ".join(a.text or "" for a in body.findall("rsp:CommandLine/rsp:Arguments", NS))
    for stream in body.findall("rsp:Send/rsp:Stream", NS):
        found["stdin"] = base64.b64decode(stream.text or "")
        found["end"] = stream.get("End", "false").lower()
        found["stream_command"] = stream.get("CommandId")
    variables = body.findall("rsp:Shell/rsp:Environment/rsp:Variable", NS)
    if variables:
        found["env"] = {v.get("Name"): v.text for v in variables}
    receive = body.find("rsp:Receive/rsp:DesiredStream", NS)
    if receive is not None:
        found["receive_command"] = receive.get("CommandId")
    signal = body.find("rsp:Signal", NS)
    if signal is not None:
        found["signal"] = (signal.get("CommandId"), signal.find("rsp:Code", NS).text)
    return found


class ReplayTransport:
    """Stands in for pywinrm's ``Transport``: checks each request, answers the recording."""

    def __init__(self, messages: list[dict]):
        self.messages = list(messages)
        self.position = 0
        self.endpoint = "http://192.168.56.11:5985/wsman"

    def send_message(self, message: str | bytes) -> bytes:
        assert self.position < len(self.messages), "more requests than the recording holds"
        recorded = self.messages[self.position]
        self.position += 1
        ours = ET.fromstring(message)
        theirs = ET.fromstring(recorded["request"])
        assert _action(ours) == _action(theirs)
        assert _body_shape(ours) == _body_shape(theirs)
        assert _selector(ours) == _selector(theirs)
        assert _content(ours) == _content(theirs)
        for name, value in _options(theirs).items():
            if name.startswith("WINRS_SKIP"):
                assert _options(ours)[name] == value
        # A server answers with RelatesTo = the request's MessageID (pywinrm checks it).
        response = recorded["response"].replace(
            theirs.find("s:Header/wsa:MessageID", NS).text, ours.find("s:Header/wsa:MessageID", NS).text
        )
        return response.encode("utf-8")

    def close_session(self) -> None:
        pass


def _shell(path: Path, **kwargs) -> tuple[WinRSShell, ReplayTransport]:
    messages = yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]
    protocol = Protocol("http://192.168.56.11:5985/wsman", transport="plaintext", username="u", password="p")
    replay = ReplayTransport(messages)
    protocol.transport = replay
    return WinRSShell(protocol, busy_pause=0, **kwargs), replay


def test_winrs_standard(reference_data: Path) -> None:
    shell, replay = _shell(reference_data / "winrs-recordings" / "winrs_standard.yml")
    shell.open()
    out, err, rc = shell.execute("cmd.exe", ["/c", "echo", "hi"], skip_cmd_shell=False, signal_code=SIGNAL_CTRL_C)
    shell.close()
    assert (out, err, rc) == (b"hi\r\n", b"", 0)
    assert replay.position == len(replay.messages)


def test_winrs_stderr_rc(reference_data: Path) -> None:
    shell, replay = _shell(reference_data / "winrs-recordings" / "winrs_stderr_rc.yml")
    shell.open()
    out, err, rc = shell.execute("cmd.exe", ["/c echo out && echo err>&2 && exit 1"], skip_cmd_shell=False, signal_code=SIGNAL_CTRL_C)
    shell.close()
    assert (out, err, rc) == (b"out \r\n", b"err \r\n", 1)
    assert replay.position == len(replay.messages)


def test_winrs_send(reference_data: Path) -> None:
    shell, replay = _shell(reference_data / "winrs-recordings" / "winrs_send.yml")
    shell.open()
    out, err, rc = shell.execute(
        "powershell.exe",
        ["-"],
        stdin=[b'Write-Host "output 1";', b'Write-Host "output 2";'],
        skip_cmd_shell=False,
        signal_code=SIGNAL_CTRL_C,
    )
    shell.close()
    assert (out, err, rc) == (b"output 1\noutput 2\n", b"", 0)
    assert replay.position == len(replay.messages)


def test_winrs_environment(reference_data: Path) -> None:
    weird = "_-(){}[]<>*+-/\\?\"!@#$^&|;:i,.`~0"
    shell, replay = _shell(
        reference_data / "winrs-recordings" / "winrs_environment.yml",
        env={"env1": "var1", "1234": "5678", weird: weird},
    )
    shell.open()
    out, err, rc = shell.execute("cmd.exe", ["/c", "set"], skip_cmd_shell=False, signal_code=SIGNAL_CTRL_C)
    shell.close()
    text = out.decode("utf-8")
    assert rc == 0 and err == b""
    assert "env1=var1\r\n" in text and "1234=5678\r\n" in text
    assert f"{weird}={weird}\r\n" in text
    assert replay.position == len(replay.messages)


def test_replay_rejects_a_different_command(reference_data: Path) -> None:
    """The replay checks content, so it can fail: another command line is refused."""

    shell, _ = _shell(reference_data / "winrs-recordings" / "winrs_standard.yml")
    shell.open()
    with pytest.raises(AssertionError):
        shell.execute("cmd.exe", ["/c", "echo", "ho"], skip_cmd_shell=False, signal_code=SIGNAL_CTRL_C)


def test_send_refuses_str() -> None:
    protocol = Protocol("http://h:5985/wsman", transport="plaintext", username="u", password="p")
    shell = WinRSShell(protocol)
    shell.shell_id = "S"
    with pytest.raises(TypeError):
        shell.send("C", "text")  # type: ignore[arg-type]
