"""A PowerShell checker for tests: tree-sitter parsing plus Microsoft's cmdlet reference.

There is no PowerShell here, so generated PowerShell is checked statically:

* :func:`syntax_errors` parses with tree-sitter-powershell and reports ERROR / MISSING nodes.
* :func:`command_calls` lists every command invocation (name, ``-Param``, ``-Param:value``,
  positional arguments, whether it is fed by a pipeline) and every function the text defines.
* :func:`check_script` checks each call against ``powershell-cmdlets.json`` (see
  ``tests/data/README.md``): the command exists in Windows PowerShell 5.1 / Windows
  Server 2022 (a cmdlet, an alias of ``aliases_5_1``, a function defined by the project's
  module, or an allowed external program); each parameter is a full parameter name, one of its
  aliases or a common parameter; switches take no separate value; the mandatory parameters of
  at least one parameter set are given. Fitting no parameter set is only a warning, as the
  README advises (the docs leave some parameters out of ``parameter_sets``).

.NET calls (``[System.IO.File]::Move(...)``, ``$stream.Write(...)``) are expressions, not
commands, so they are never checked here. Commands whose name is computed (``& $exe``,
``. $block``) cannot be checked statically and are skipped.

Known grammar gaps of tree-sitter-powershell 0.26, handled here: ``ForEach-Object`` at the start
of a statement is read as the ``foreach`` keyword (hidden from the grammar by :func:`parse`);
``16MB`` is read as a command name (skipped by :func:`check_script`); ``New-Object Foo($a)`` and ``$x.M()`` both come out as two
nodes (only a variable expression and its member call are joined into one argument). Not
handled: it rejects a ``param(...)`` block followed by a
statement on the SAME line (``{ param($a) $a }``), which PowerShell accepts; the project's
PowerShell puts ``param(...)`` on its own line.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Iterable, Mapping

import tree_sitter_powershell
from tree_sitter import Language, Node, Parser, Tree

from . import PROJECT_ROOT, REFERENCE, reference_dir

__all__ = [
    "ALLOWED_EXECUTABLES",
    "CmdletReference",
    "CommandCall",
    "Element",
    "FunctionDef",
    "PROJECT_ROOT",
    "Problem",
    "REFERENCE",
    "ScriptCommands",
    "check_script",
    "command_calls",
    "decode_single_quoted",
    "load_reference",
    "parse",
    "reference_dir",
    "restore_command_name",
    "syntax_errors",
]

#: External programs the project's PowerShell may run by name (lower case). Only those the
#: module really uses: msiexec.exe installs the IIS extensions (field notes, URL Rewrite and
#: ARR), netsh.exe binds certificates in HTTP.sys (field notes, IIS), icacls.exe is the
#: documented fallback for ACLs. Pass ``executables=`` to :func:`check_script` to extend it.
ALLOWED_EXECUTABLES = frozenset({"msiexec.exe", "netsh.exe", "icacls.exe"})

#: Characters PowerShell treats as a single quote inside a single-quoted string: the ASCII
#: apostrophe and U+2018..U+201B (PowerShell tokenizer ``CharExtensions.IsSingleQuote``).
PS_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"

# Mandatory parameters the docs mark Required that are NOT mandatory in a normal call: provider
# dynamic parameters documented on the cmdlet page (README, "Provider dynamic parameters are
# included"). New-Item's ConnectionURI is mandatory only on the WSMan: drive.
_NOT_REALLY_MANDATORY = {("new-item", "connectionuri")}

# tree-sitter-powershell 0.26 reads a number with a multiplier suffix (`16MB`) as a command name;
# PowerShell reads it as a number (about_Numeric_Literals).
_NUMBER_WITH_MULTIPLIER = re.compile(r"^(?:0x[0-9a-f]+|[0-9.]+)(?:[dlu]|ul|lu)?(?:kb|mb|gb|tb|pb)$", re.I)

_LANGUAGE = Language(tree_sitter_powershell.language())


@functools.lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(_LANGUAGE)


# --- Parsing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`check_script`; ``line`` and ``column`` are 1-based."""

    line: int
    column: int
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.line}:{self.column}: {prefix}{self.message}"


# tree-sitter-powershell 0.26 reads `ForEach-Object` at the start of a statement as the `foreach`
# keyword and fails; PowerShell reads a command. parse() hides the keyword from the grammar by
# writing the `h` as `0` (`H` as `1`) there, same length, and :func:`_command_name` restores it.
_FOREACH_OBJECT = re.compile(r"((?:^|[;{(=]|&&|\|\|)[ \t]*)(foreac)([hH])(-object\b)", re.I | re.M)
_FOREACH_OBJECT_HIDDEN = re.compile(r"(foreac)([01])(-object)", re.I)


def parse(text: str) -> Tree:
    """Parse PowerShell ``text`` with tree-sitter-powershell; returns the tree (never raises).

    A ``ForEach-Object`` at the start of a statement is parsed as a command (see above): in the
    tree its name reads ``ForEac0-Object``; :func:`command_calls` reports ``ForEach-Object``.
    """

    hidden = _FOREACH_OBJECT.sub(lambda m: m.group(1) + m.group(2) + ("0" if m.group(3) == "h" else "1") + m.group(4), text)
    return _parser().parse(hidden.encode("utf-8"))


def restore_command_name(name: str) -> str:
    """Undo :func:`parse`'s hiding of ``ForEach-Object`` in a command name read from the tree."""

    match = _FOREACH_OBJECT_HIDDEN.fullmatch(name)
    if match is None:
        return name
    return match.group(1) + ("h" if match.group(2) == "0" else "H") + match.group(3)


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "replace")


def _position(node: Node) -> tuple[int, int]:
    # tree-sitter columns count bytes; good enough for ASCII scripts, and only used in messages.
    return node.start_point.row + 1, node.start_point.column + 1


def _walk(node: Node) -> Iterable[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def syntax_errors(text: str) -> list[str]:
    """Return the syntax errors of ``text`` as ``"line:col: ..."`` strings (empty when it parses).

    Reports tree-sitter ERROR nodes (text that fits no rule) and MISSING nodes (a token the
    parser had to invent, such as a closing brace).
    """

    errors = []
    for node in _walk(parse(text).root_node):
        line, column = _position(node)
        if node.is_missing:
            errors.append(f"{line}:{column}: missing {node.type!r}")
        elif node.type == "ERROR":
            snippet = _text(node).splitlines()[0][:60] if node.text else ""
            errors.append(f"{line}:{column}: syntax error at {snippet!r}")
    return errors


def decode_single_quoted(literal: str) -> tuple[str, str]:
    """Read one PowerShell single-quoted string literal at the start of ``literal``.

    Follows the PowerShell tokenizer (``ScanStringLiteral``): inside the literal any of
    :data:`PS_SINGLE_QUOTES` followed by another one stands for the second; a lone one ends
    the literal. tree-sitter-powershell only knows the ASCII quote, so this is how tests prove
    that typographic quotes cannot end a literal early.

    Args:
        literal: text starting with a single-quote character.

    Returns:
        ``(value, rest)``: the decoded value and the text after the closing quote.

    Raises:
        ValueError: ``literal`` does not start with a quote or is not terminated.
    """

    if not literal or literal[0] not in PS_SINGLE_QUOTES:
        raise ValueError("not a single-quoted literal")
    out = []
    index = 1
    while index < len(literal):
        char = literal[index]
        if char in PS_SINGLE_QUOTES:
            if index + 1 < len(literal) and literal[index + 1] in PS_SINGLE_QUOTES:
                out.append(literal[index + 1])
                index += 2
                continue
            return "".join(out), literal[index + 1 :]
        out.append(char)
        index += 1
    raise ValueError("unterminated single-quoted literal")


# --- Commands and functions in a script -------------------------------------------------


@dataclass(frozen=True)
class Element:
    """One argument of a command: a ``-Parameter`` or an argument value.

    ``kind`` is ``"parameter"`` (``text`` without the dash) or ``"argument"``; ``colon_value``
    is true for ``-Name:value`` (the value is the next element); ``node_type`` is the
    tree-sitter node type of an argument (``string_literal``, ``variable``, ...).
    """

    kind: str
    text: str
    line: int
    column: int
    colon_value: bool = False
    node_type: str = ""


@dataclass(frozen=True)
class CommandCall:
    """One command invocation.

    ``name`` is the command name as written (for ``& 'C:\\x\\netsh.exe'`` the literal's value),
    or ``None`` when it is computed (``& $exe``); ``piped`` is true when a pipeline feeds it.
    """

    name: str | None
    line: int
    column: int
    elements: tuple[Element, ...]
    piped: bool
    text: str

    @property
    def parameters(self) -> list[str]:
        """The ``-Parameter`` names used, without the dash, in order."""

        return [element.text for element in self.elements if element.kind == "parameter"]


@dataclass(frozen=True)
class FunctionDef:
    """A function defined in the text: its parameters (names without ``$``), which of them are
    ``[switch]`` and which are ``[Parameter(Mandatory)]``; ``advanced`` when it has
    ``[CmdletBinding()]`` or a ``[Parameter()]`` attribute (then common parameters apply)."""

    name: str
    line: int
    parameters: tuple[str, ...] = ()
    switches: tuple[str, ...] = ()
    mandatory: tuple[str, ...] = ()
    advanced: bool = False


@dataclass(frozen=True)
class ScriptCommands:
    """What :func:`command_calls` found: the calls, and the functions defined (by lower-case name)."""

    calls: tuple[CommandCall, ...]
    defined: Mapping[str, FunctionDef] = field(default_factory=dict)


def _command_name(command: Node) -> str | None:
    for child in command.children:
        if child.type == "command_name":
            return restore_command_name(_text(child))
        if child.type == "command_name_expr":
            for inner in child.children:
                if inner.type == "command_name":
                    return restore_command_name(_text(inner))
                if inner.type == "string_literal" and _text(inner)[:1] in PS_SINGLE_QUOTES:
                    return decode_single_quoted(_text(inner))[0]
            return None
    return None


def _elements(command: Node) -> tuple[Element, ...]:
    elements: list[Element] = []
    holder = next((child for child in command.children if child.type == "command_elements"), None)
    if holder is None:
        return ()
    colon_next = False
    previous_end = -1
    for child in holder.children:
        if child.type == "command_argument_sep":
            if ":" in _text(child) and elements and elements[-1].kind == "parameter":
                last = elements[-1]
                elements[-1] = Element(last.kind, last.text, last.line, last.column, True)
                colon_next = True
            continue
        if child.type in ("redirection", "comment"):
            continue
        line, column = _position(child)
        adjacent = child.start_byte == previous_end
        previous_end = child.end_byte
        if adjacent and elements and elements[-1].kind == "argument" and elements[-1].text.startswith("$") and not colon_next:
            # tree-sitter splits `$err.ToString()` into `$err.ToString` and `()`; PowerShell
            # reads a variable expression and its member call or index as one argument (unlike
            # `New-Object Foo($a)`, which passes two).
            last = elements[-1]
            elements[-1] = Element(last.kind, last.text + _text(child), last.line, last.column, node_type=last.node_type)
            continue
        if child.type == "command_parameter" and not colon_next:
            elements.append(Element("parameter", _text(child)[1:].rstrip(":"), line, column))
        else:
            elements.append(Element("argument", _text(child), line, column, node_type=child.type))
        colon_next = False
    return tuple(elements)


def _function_def(node: Node) -> FunctionDef | None:
    name_node = next((child for child in node.children if child.type == "function_name"), None)
    if name_node is None:
        return None
    name = re.sub(r"^(script|global|local|private):", "", _text(name_node), flags=re.I)
    parameters: list[str] = []
    switches: list[str] = []
    mandatory: list[str] = []
    advanced = False
    for inner in _walk(node):
        if inner.type == "function_statement" and inner is not node:
            continue
        if inner.type == "attribute" and re.match(r"\[\s*CmdletBinding\b", _text(inner), re.I):
            advanced = True
        if inner.type != "parameter_list" or _enclosing_function(inner) != node:
            continue
        for parameter in inner.children:
            if parameter.type != "script_parameter":
                continue
            variable = next((c for c in parameter.children if c.type == "variable"), None)
            if variable is None:
                continue
            pname = _text(variable).lstrip("$")
            parameters.append(pname)
            attributes = " ".join(_text(c) for c in parameter.children if c.type == "attribute_list")
            if re.search(r"\[\s*switch\s*\]", attributes, re.I):
                switches.append(pname)
            declared = re.search(r"\[\s*Parameter\s*\((?P<args>[^)]*)\)", attributes, re.I)
            if declared:
                advanced = True
                if re.search(r"\bMandatory\b(?!\s*=\s*\$false)", declared.group("args"), re.I):
                    mandatory.append(pname)
    return FunctionDef(name, _position(node)[0], tuple(parameters), tuple(switches), tuple(mandatory), advanced)


def _enclosing_function(node: Node) -> Node | None:
    current = node.parent
    while current is not None and current.type != "function_statement":
        # A param block of a script block inside the function belongs to that script block.
        if current.type == "script_block_expression":
            return None
        current = current.parent
    return current


def command_calls(text: str) -> ScriptCommands:
    """Return every command invocation in ``text`` and every function it defines.

    Args:
        text: PowerShell source.

    Returns:
        :class:`ScriptCommands`; ``calls`` in source order; ``defined`` maps the lower-case
        function name to its :class:`FunctionDef` (``function script:X`` counts as ``X``).
    """

    calls: list[CommandCall] = []
    defined: dict[str, FunctionDef] = {}
    nodes = sorted(_walk(parse(text).root_node), key=lambda n: n.start_byte)
    for node in nodes:
        if node.type == "command":
            previous = node.prev_sibling
            line, column = _position(node)
            calls.append(
                CommandCall(
                    name=_command_name(node),
                    line=line,
                    column=column,
                    elements=_elements(node),
                    piped=previous is not None and previous.type == "|",
                    text=_text(node),
                )
            )
        elif node.type == "function_statement":
            definition = _function_def(node)
            if definition is not None:
                defined[definition.name.lower()] = definition
    return ScriptCommands(tuple(calls), defined)


# --- The cmdlet reference ---------------------------------------------------------------


@dataclass(frozen=True)
class CmdletSpec:
    """One cmdlet of ``powershell-cmdlets.json``, indexed for lookups (lower-case keys)."""

    name: str
    module: str
    names: Mapping[str, str]  # lower-case parameter name or alias -> canonical name
    switches: frozenset[str]  # canonical names
    parameter_sets: Mapping[str, tuple[str, ...]]
    mandatory_by_set: Mapping[str, tuple[str, ...]]
    positions: Mapping[str, int]


class CmdletReference:
    """``powershell-cmdlets.json`` loaded and indexed; build it with :func:`load_reference`."""

    def __init__(self, data: Mapping[str, Any]):
        self.common: dict[str, str] = {}
        for name in data["common_parameters"]:
            self.common[name.lower()] = name
        for name, alias in data["common_parameter_aliases"].items():
            if name in data["common_parameters"]:
                self.common[alias.lower()] = name
        self.common_switches = frozenset({"Debug", "Verbose"})
        self.cmdlets: dict[str, CmdletSpec] = {}
        for module, cmdlets in data["modules"].items():
            for name, spec in cmdlets.items():
                self.cmdlets.setdefault(name.lower(), self._spec(module, name, spec))
        self.aliases = {alias.lower(): target for alias, target in data["aliases_5_1"].items()}

    @staticmethod
    def _spec(module: str, name: str, spec: Mapping[str, Any]) -> CmdletSpec:
        names = {parameter.lower(): parameter for parameter in spec.get("parameters", [])}
        for parameter, aliases in spec.get("parameter_aliases", {}).items():
            for alias in aliases:
                names.setdefault(alias.lower(), parameter)
        positions = {}
        for parameter, position in spec.get("positions", {}).items():
            if str(position).isdigit():
                positions[parameter] = int(position)
        return CmdletSpec(
            name=name,
            module=module,
            names=names,
            switches=frozenset(spec.get("switches", [])),
            parameter_sets={k: tuple(v) for k, v in spec.get("parameter_sets", {}).items()},
            mandatory_by_set={
                k: tuple(p for p in v if (name.lower(), p.lower()) not in _NOT_REALLY_MANDATORY)
                for k, v in spec.get("mandatory_by_set", {}).items()
            }
            or ({"(all)": tuple(spec["mandatory"])} if spec.get("mandatory") else {}),
            positions=positions,
        )

    def lookup(self, name: str) -> CmdletSpec | None:
        """Return the cmdlet called ``name`` (case-insensitive; an ``aliases_5_1`` key resolves
        to its cmdlet), or ``None``."""

        key = name.lower()
        if key in self.aliases:
            key = self.aliases[key].lower()
        return self.cmdlets.get(key)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> CmdletReference:
    with open(path, encoding="utf-8") as handle:
        return CmdletReference(json.load(handle))


def load_reference(reference: Path | str | CmdletReference) -> CmdletReference:
    """Return the indexed cmdlet reference, loading the JSON (about 1 MB) once per path.

    Args:
        reference: the ``reference`` folder, the ``powershell-cmdlets.json`` file, or an
            already loaded :class:`CmdletReference`.

    Raises:
        FileNotFoundError: the JSON file does not exist.
    """

    if isinstance(reference, CmdletReference):
        return reference
    path = Path(reference)
    if path.is_dir():
        path = path / "powershell-cmdlets.json"
    return _load(str(path.resolve()))


# --- Checking ---------------------------------------------------------------------------


def check_script(
    text: str,
    *,
    defined: Iterable[str] | Mapping[str, FunctionDef] = (),
    reference: Path | str | CmdletReference,
    executables: Iterable[str] = ALLOWED_EXECUTABLES,
    include_warnings: bool = False,
) -> list[Problem]:
    """Check a PowerShell script against the cmdlet reference.

    Args:
        text: PowerShell source.
        defined: functions of the project's module that the script may call, as names or as a
            mapping name -> :class:`FunctionDef` (then their parameters are checked too).
            Functions the text itself defines always count.
        reference: see :func:`load_reference`.
        executables: external programs allowed by name (lower case), default
            :data:`ALLOWED_EXECUTABLES`.
        include_warnings: also return warnings (a call that fits no documented parameter set).

    Returns:
        the problems found, sorted by line and column; empty when the script is clean.
    """

    cmdlets = load_reference(reference)
    problems = [Problem(*_split_position(error), "syntax: " + error.split(": ", 1)[1]) for error in syntax_errors(text)]
    found = command_calls(text)
    functions: dict[str, FunctionDef | None] = {}
    if isinstance(defined, Mapping):
        functions.update({name.lower(): value for name, value in defined.items()})
    else:
        functions.update({name.lower(): None for name in defined})
    functions.update(found.defined)
    allowed_programs = {program.lower() for program in executables}

    for call in found.calls:
        if call.name is None or _NUMBER_WITH_MULTIPLIER.match(call.name):
            continue
        key = call.name.lower()
        if key in functions:
            definition = functions[key]
            if definition is not None:
                problems.extend(_check_function_call(call, definition, cmdlets))
            continue
        spec = cmdlets.lookup(call.name)
        if spec is not None:
            problems.extend(_check_cmdlet_call(call, spec, cmdlets))
            continue
        program = PureWindowsPath(call.name).name.lower()
        if program in allowed_programs or program + ".exe" in allowed_programs:
            continue
        problems.append(Problem(call.line, call.column, f"unknown command {call.name!r}: not a Windows PowerShell 5.1 / Server 2022 cmdlet, alias, module function or allowed program"))

    if not include_warnings:
        problems = [problem for problem in problems if problem.severity == "error"]
    return sorted(problems, key=lambda problem: (problem.line, problem.column))


def _split_position(error: str) -> tuple[int, int]:
    line, column, _ = error.split(":", 2)
    return int(line), int(column)


@dataclass
class _Binding:
    named: dict[str, Element] = field(default_factory=dict)  # canonical name -> the -Param element
    positional: list[Element] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _bind(call: CommandCall, resolve, is_switch) -> _Binding:
    """Bind the call's elements: ``resolve(name) -> canonical | None``, ``is_switch(canonical)``."""

    binding = _Binding()
    elements = list(call.elements)
    index = 0
    while index < len(elements):
        element = elements[index]
        index += 1
        if element.kind == "argument":
            binding.positional.append(element)
            continue
        canonical = resolve(element.text)
        following = elements[index] if index < len(elements) and elements[index].kind == "argument" else None
        if canonical is None:
            binding.problems.append(Problem(element.line, element.column, f"{call.name}: unknown parameter -{element.text} (full parameter names or documented aliases only)"))
            if following is not None and element.colon_value:
                index += 1
            continue
        binding.named[canonical] = element
        if element.colon_value:
            index += 1
        elif is_switch(canonical):
            if following is not None:
                binding.problems.append(Problem(following.line, following.column, f"{call.name}: switch -{element.text} given a separate value {following.text!r}; a switch takes no value (write -{element.text}:{following.text})"))
                index += 1
        elif following is not None:
            index += 1
        else:
            binding.problems.append(Problem(element.line, element.column, f"{call.name}: parameter -{element.text} needs a value"))
    return binding


def _check_cmdlet_call(call: CommandCall, spec: CmdletSpec, cmdlets: CmdletReference) -> list[Problem]:
    def resolve(name: str) -> str | None:
        return spec.names.get(name.lower()) or cmdlets.common.get(name.lower())

    def is_switch(canonical: str) -> bool:
        return canonical in spec.switches or canonical in cmdlets.common_switches

    binding = _bind(call, resolve, is_switch)
    problems = list(binding.problems)
    problems.extend(_check_parameter_sets(call, spec, binding, cmdlets))
    return problems


def _check_parameter_sets(call: CommandCall, spec: CmdletSpec, binding: _Binding, cmdlets: CmdletReference) -> list[Problem]:
    set_names = list(spec.parameter_sets) or list(spec.mandatory_by_set) or ["(all)"]
    used = {name for name in binding.named if name not in cmdlets.common.values()}
    best: tuple[int, str, list[str]] | None = None
    mandatory_ok_sets = []
    for set_name in set_names:
        members = spec.parameter_sets.get(set_name)
        present = set(used)
        free = sorted(
            (p for p in spec.positions if p not in present and (members is None or p in members)),
            key=lambda p: spec.positions[p],
        )
        present.update(free[: len(binding.positional)])
        missing = [p for p in spec.mandatory_by_set.get(set_name, ()) if p not in present]
        # A pipeline binds one parameter (InputObject, Path, ...) from its input.
        allowed_missing = 1 if call.piped else 0
        if len(missing) <= allowed_missing:
            mandatory_ok_sets.append(set_name)
            if members is None or used <= set(members):
                return []
        if best is None or len(missing) < best[0]:
            best = (len(missing), set_name, missing)
    if not mandatory_ok_sets and best is not None:
        listed = ", ".join("-" + name for name in best[2])
        return [Problem(call.line, call.column, f"{call.name}: missing mandatory parameter(s) {listed} (closest parameter set {best[1]!r})")]
    return [Problem(call.line, call.column, f"{call.name}: parameters {sorted(used)} fit no documented parameter set", "warning")]


def _check_function_call(call: CommandCall, definition: FunctionDef, cmdlets: CmdletReference) -> list[Problem]:
    own = {name.lower(): name for name in definition.parameters}

    def resolve(name: str) -> str | None:
        if name.lower() in own:
            return own[name.lower()]
        return cmdlets.common.get(name.lower()) if definition.advanced else None

    def is_switch(canonical: str) -> bool:
        return canonical in definition.switches or canonical in cmdlets.common_switches

    binding = _bind(call, resolve, is_switch)
    problems = list(binding.problems)
    positional_free = [p for p in definition.parameters if p not in binding.named and p not in definition.switches]
    present = set(binding.named) | set(positional_free[: len(binding.positional)])
    missing = [p for p in definition.mandatory if p not in present]
    if len(missing) > (1 if call.piped else 0):
        listed = ", ".join("-" + name for name in missing)
        problems.append(Problem(call.line, call.column, f"{call.name}: missing mandatory parameter(s) {listed}"))
    return problems
