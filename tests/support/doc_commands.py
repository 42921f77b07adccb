"""The shell commands the documentation shows, read out of its Markdown, and how a test runs
them: as written, in one shell per document, against what `make demo` starts.

A command is a logical line of a ```sh block (lines ending in a backslash joined, comment-only
lines left out; a trailing comment stays, bash ignores it). Most run exactly as written. The
rest need a rule in ``RULES`` (tests/support/doc_rules.py): a command that cannot run here is
skipped with the reason and where it is tested instead; a placeholder (RUN) is replaced by a
real value; a command that does not end by itself (a watch, a server) is run until it shows what
it should. A command no rule covers must run and exit 0 — so a doc whose command breaks fails
the test, and a new command nobody thought about runs too.

This module is pure (reading Markdown, matching rules, writing the bash script, reading its
output back); tests/unit/test_doc_commands.py drives it, tests/test_docs_commands.py runs it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SHELL_FENCES = frozenset({"sh", "bash", "shell", "console"})
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Command:
    """One command of a document: where it is and its text, as a reader would paste it."""

    file: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
    """How one command of one document is run, when not simply as written.

    ``match`` is a regular expression searched in the command's text; ``why`` says why the rule
    exists — every rule has one. ``skip``: not run here. ``replace``: (old, new) pairs applied
    to the text (placeholders → values; ``new`` may be shell). ``until``: the command does not
    end by itself; it runs until every one of these expressions matches a line of its output,
    then it is stopped. ``server``: it starts a
    server; the port it listens on is awaited, the server stopped when the document ends.
    ``expect``: its output must match; with ``eventually`` seconds, it is re-run until it does.
    ``before``: shell run first in the same shell (what the doc assumes exists, e.g. a run
    waiting for its approval); its output is shown with the command's.
    """

    file: str
    match: str
    why: str
    skip: bool = False
    replace: tuple[tuple[str, str], ...] = ()
    until: tuple[str, ...] = ()
    server: int = 0
    expect: str = ""
    eventually: float = 0
    timeout: float = 120
    before: str = ""

    def covers(self, command: Command) -> bool:
        return command.file == self.file and re.search(self.match, command.text) is not None


@dataclass(frozen=True)
class Planned:
    """A command with the rule that applies to it (if any) and the text that will run."""

    command: Command
    rule: Rule | None
    text: str
    before: str = ""

    @property
    def skipped(self) -> bool:
        return self.rule is not None and self.rule.skip


@dataclass
class Outcome:
    """What one command did when run."""

    planned: Planned
    code: int | None = None
    output: str = ""
    problems: list[str] = field(default_factory=list)


def commands_of(markdown: str, file: str) -> list[Command]:
    """The commands of every shell block of one Markdown document, in order."""
    commands: list[Command] = []
    for fence in _FENCE.finditer(markdown):
        if fence.group("lang") not in SHELL_FENCES:
            continue
        first = markdown[: fence.start("body")].count("\n") + 1
        pending: list[str] = []
        start = first
        for offset, raw in enumerate(fence.group("body").splitlines()):
            line = raw.rstrip()
            if not pending:
                start = first + offset
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
            if line.endswith("\\"):
                pending.append(line[:-1].rstrip())
                continue
            pending.append(line.strip() if pending else line)
            commands.append(Command(file, start, " ".join(part.strip() for part in pending)))
            pending = []
        if pending:
            raise ValueError(f"{file}:{start}: a command ends with a backslash and no next line")
    return commands


def plan(
    commands: Iterable[Command],
    rules: Sequence[Rule],
    local: Sequence[tuple[str, str]] = (),
) -> list[Planned]:
    """Each command with its rule. Two rules for one command is an error in the rules.
    ``local``: (old, new) pairs applied to every command and ``before`` after the rule's own
    (the ports this machine gave the demo, when the documented ones were taken)."""
    planned: list[Planned] = []
    for command in commands:
        matching = [rule for rule in rules if rule.covers(command)]
        if len(matching) > 1:
            raise ValueError(f"{command.where}: {len(matching)} rules cover `{command.text}`")
        rule = matching[0] if matching else None
        text = command.text
        for old, new in rule.replace if rule else ():
            if old not in text:
                raise ValueError(f"{command.where}: the rule replaces {old!r}, not in `{text}`")
            text = text.replace(old, new)
        before = rule.before if rule else ""
        for old, new in local:
            text, before = text.replace(old, new), before.replace(old, new)
        planned.append(Planned(command, rule, text, before))
    return planned


def unused_rules(commands: Sequence[Command], rules: Sequence[Rule]) -> list[Rule]:
    """Rules that cover no command any more (the doc changed under them)."""
    return [rule for rule in rules if not any(rule.covers(c) for c in commands)]


# -- the script ---------------------------------------------------------------------------------

BEGIN = "@@doc-command-begin"
END = "@@doc-command-end"

_PRELUDE = """\
set -u -o pipefail
cd {root}
{setup}
# A command that gets an HTTP error fails, as a reader would notice it: curl exits 22.
curl() {{ command curl --fail-with-body "$@"; }}
__servers=()
__stop() {{  # a process and its children, gone when this returns
  local pids n=0
  pids="$1 $(pgrep -P "$1" | tr '\n' ' ')"
  kill $pids 2>/dev/null
  while kill -0 $pids 2>/dev/null && (( n++ < 100 )); do sleep 0.05; done
  kill -KILL $pids 2>/dev/null
  wait "$1" 2>/dev/null
  true
}}
__stop_servers() {{
  local pid
  for pid in "${{__servers[@]}}"; do __stop "$pid"; done
}}
trap __stop_servers EXIT
__listening() {{ (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }}
"""


ENV_SETUP = 'eval "$(hack/control-plane.sh env)" || exit 97'


def script(
    planned: Sequence[Planned], root: Path, helpers: str = "", setup: str = ENV_SETUP
) -> str:
    """One bash script running a document's commands in one shell, in order, each framed by
    markers carrying its index and exit status (``outcomes`` reads them back). ``helpers``:
    shell functions the rules' ``before`` use; ``setup``: what the reader did first (the
    README's `eval "$(hack/control-plane.sh env)"`)."""
    parts = [_PRELUDE.format(root=shlex.quote(str(root)), setup=setup), helpers]
    for index, item in enumerate(planned):
        if item.skipped:
            continue
        rule = item.rule
        text = shlex.quote(item.text)
        parts.append(f"printf '\\n{BEGIN} {index}\\n'")
        if item.before:
            parts.append(
                f"{{ {item.before}\n}} 2>&1 </dev/null || echo '(what the command needs failed)'"
            )
        if rule and rule.server:
            parts.append(_server(item.text, rule))
        elif rule and rule.until:
            parts.append(_until(text, rule))
        elif rule and rule.eventually:
            parts.append(_eventually(text, rule))
        else:
            parts.append(f"eval {text} 2>&1 </dev/null")
        parts.append(f"printf '\\n{END} {index} %s\\n' \"$?\"")
    return "\n".join(parts) + "\n"


def _server(text: str, rule: Rule) -> str:
    # A trailing `&` is the doc's way of saying "in the background": this runs it so anyway.
    text = shlex.quote(text.rstrip().removesuffix("&").rstrip())
    port = rule.server
    return (
        f"__slog=$(mktemp)\n"
        f'eval {text} >"$__slog" 2>&1 </dev/null & __pid=$!; __servers+=($__pid); __rc=0\n'
        f"__deadline=$((SECONDS + {int(rule.timeout)}))\n"
        f"until __listening {port}; do\n"
        f"  kill -0 $__pid 2>/dev/null || {{ echo 'the server exited'; __rc=1; break; }}\n"
        f"  (( SECONDS < __deadline )) || {{ echo 'nothing listens on {port}'; __rc=1; break; }}\n"
        f"  sleep 0.1\n"
        f"done\n"
        f'(( __rc == 0 )) || cat "$__slog"; (exit $__rc)'
    )


def _until(text: str, rule: Rule) -> str:
    found = " && ".join(f'grep -Eq {shlex.quote(p)} "$__log"' for p in rule.until)
    return (
        f"__log=$(mktemp)\n"
        f'eval {text} >"$__log" 2>&1 </dev/null & __pid=$!\n'
        f"__deadline=$((SECONDS + {int(rule.timeout)}))\n"
        f"until {found}; do\n"
        f"  kill -0 $__pid 2>/dev/null && (( SECONDS < __deadline )) || break\n"
        f"  sleep 0.2\n"
        f"done\n"
        f"__stop $__pid\n"
        f'cat "$__log"; {found}; __rc=$?; rm -f "$__log"; (exit $__rc)'
    )


def _eventually(text: str, rule: Rule) -> str:
    pattern = shlex.quote(rule.expect)
    return (
        f"__deadline=$((SECONDS + {int(rule.eventually)}))\n"
        f"while :; do\n"
        f"  __out=$(eval {text} 2>&1 </dev/null); __rc=$?\n"
        f'  (( __rc == 0 )) && grep -Eq {pattern} <<<"$__out" && break\n'
        f"  (( SECONDS < __deadline )) || break\n"
        f"  sleep 0.5\n"
        f"done\n"
        f"printf '%s\\n' \"$__out\"; (exit $__rc)"
    )


_MARK = re.compile(rf"^{BEGIN} (\d+)$|^{END} (\d+) (\d+)$", re.M)


def outcomes(planned: Sequence[Planned], output: str) -> list[Outcome]:
    """What each command that was to run did, from the script's output; a command whose end
    marker is missing (the shell died) has no code and says so."""
    results = {i: Outcome(p) for i, p in enumerate(planned) if not p.skipped}
    current: int | None = None
    start = 0
    for mark in _MARK.finditer(output):
        if current is not None and current in results:
            results[current].output = output[start : mark.start()].rstrip("\n")
        if mark.group(1) is not None:
            current, start = int(mark.group(1)), mark.end() + 1
            continue
        index, code = int(mark.group(2)), int(mark.group(3))
        if index == current and index in results:
            results[index].code = code
        current = None
    if current is not None and current in results:  # the shell stopped during this one
        results[current].output = output[start:].rstrip("\n")
    for result in results.values():
        rule = result.planned.rule
        if result.code is None:
            result.problems.append("it did not finish: the shell stopped before its end")
        elif result.code != 0:
            result.problems.append(f"it exited {result.code}")
        elif rule and rule.expect and not re.search(rule.expect, result.output, re.S | re.M):
            result.problems.append(f"its output does not match {rule.expect!r}")
    return list(results.values())


def report(failed: Sequence[Outcome]) -> str:
    """A failure message a reader of the doc can act on: where, what ran, what it said."""
    blocks = []
    for result in failed:
        item = result.planned
        shown = (
            item.text
            if item.text == item.command.text
            else f"{item.text}\n  (doc: {item.command.text})"
        )
        tail = "\n".join(result.output.splitlines()[-25:])
        blocks.append(f"{item.command.where}: {'; '.join(result.problems)}\n  $ {shown}\n{tail}")
    return "\n\n".join(blocks)
