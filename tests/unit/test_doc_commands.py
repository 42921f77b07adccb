"""Reading the docs' shell commands and running them in one shell (tests/support/doc_commands.py),
and the rule table that says how each is run (tests/support/doc_rules.py): every document with a
shell block is in it, every rule still covers a command, and the commands use what a fresh
machine has.

The scripts run in a real bash here: commands are echoes, a loopback HTTP server and sleeps of a
fraction of a second, so this stays fast; tests/test_docs_commands.py runs the real docs.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.doc_commands import (
    Command,
    Rule,
    commands_of,
    outcomes,
    plan,
    report,
    script,
    unused_rules,
)
from tests.support.doc_rules import CHART_DOCUMENTS, CHART_RULES, DOCUMENTS, HELPERS, RULES

REPO = Path(__file__).resolve().parents[2]

DOC = """\
# Title

```sh
# a comment line is not a command
make demo   # a trailing comment stays

curl -si http://127.0.0.1:8080/x \\
  -H 'A: b' \\
  -d '{}'
```

```yaml
kind: App
```

```
not a shell block
```

```bash
echo two
```
"""


def test_commands_are_logical_lines_of_shell_blocks_with_their_line_numbers() -> None:
    commands = commands_of(DOC, "doc.md")
    assert commands == [
        Command("doc.md", 5, "make demo   # a trailing comment stays"),
        Command("doc.md", 7, "curl -si http://127.0.0.1:8080/x -H 'A: b' -d '{}'"),
        Command("doc.md", 21, "echo two"),
    ]
    assert commands[0].where == "doc.md:5"


def test_a_block_ending_in_a_backslash_is_an_error_in_the_doc() -> None:
    with pytest.raises(ValueError, match=r"doc\.md:2: a command ends with a backslash"):
        commands_of("```sh\necho a \\\n```\n", "doc.md")


def test_rules_apply_to_their_file_only_and_two_rules_for_one_command_are_refused() -> None:
    commands = [Command("a.md", 1, "echo RUN"), Command("b.md", 1, "echo RUN")]
    rule = Rule("a.md", r"RUN", "placeholder", replace=(("RUN", "r-1"),))
    planned = plan(commands, [rule], local=(("echo", "printf '%s\\n'"),))
    assert [p.text for p in planned] == ["printf '%s\\n' r-1", "printf '%s\\n' RUN"]
    assert planned[0].rule is rule and planned[1].rule is None
    with pytest.raises(ValueError, match=r"a\.md:1: 2 rules cover"):
        plan(commands, [rule, Rule("a.md", r"echo", "again")])
    with pytest.raises(ValueError, match=r"replaces 'NAME'"):
        plan(commands, [Rule("a.md", r"RUN", "x", replace=(("NAME", "n"),))])
    assert unused_rules(commands, [rule, Rule("c.md", "x", "gone")]) == [Rule("c.md", "x", "gone")]


def _run(commands: list[str], rules: list[Rule], tmp_path: Path) -> list[str]:
    """Runs the commands as one document in bash and returns each one's problems (joined)."""
    planned = plan([Command("t.md", i + 1, c) for i, c in enumerate(commands)], rules)
    done = subprocess.run(
        ["bash", "-c", script(planned, tmp_path, setup="")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    results = outcomes(planned, done.stdout)
    return ["; ".join(r.problems) + f"|{r.output}" for r in results]


def test_commands_share_one_shell_and_each_one_s_status_and_output_are_read_back(
    tmp_path: Path,
) -> None:
    results = _run(
        [
            "X=42",
            "echo value $X",
            "false",
            "echo skipped-not",
            "echo out; exit 3",  # the shell dies: what follows never finishes
            "echo never",
        ],
        [Rule("t.md", r"skipped-not", "shown skipped", skip=True)],
        tmp_path,
    )
    assert results == [
        "|",
        "|value 42",
        "it exited 1|",
        "it did not finish: the shell stopped before its end|out",
        "it did not finish: the shell stopped before its end|",
    ]


def test_curl_fails_on_an_http_error_as_a_reader_would_notice(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rules = [Rule("t.md", "http.server", "a server", server=port)]
    results = _run(
        [
            f"python3 -m http.server {port} --bind 127.0.0.1 &",
            f"curl -s http://127.0.0.1:{port}/ >/dev/null && echo listed",
            f"curl -s http://127.0.0.1:{port}/missing",
        ],
        rules,
        tmp_path,
    )
    assert results[0] == "|" and results[1] == "|listed"
    assert results[2].startswith("it exited 22|") and "404" in results[2]
    # The server was stopped with the document: nothing listens any more.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_until_stops_a_command_that_never_ends_once_it_shows_what_it_should(
    tmp_path: Path,
) -> None:
    forever = "for i in 1 2 3; do echo line $i; sleep 0.1; done; echo ready; sleep 600"
    results = _run(
        [forever], [Rule("t.md", r"^for", "a watch", until=("^ready$", "^line 2$"))], tmp_path
    )
    assert results[0] == "|line 1\nline 2\nline 3\nready"
    never = _run(
        ["echo nothing; sleep 600"],
        [Rule("t.md", r"nothing", "a watch", until=("ready",), timeout=1)],
        tmp_path,
    )
    assert never[0].startswith("it exited 1|nothing")


def test_eventually_re_runs_a_command_until_its_output_matches(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    command = f"echo x >> {counter}; wc -l < {counter}"
    results = _run(
        [command], [Rule("t.md", r"wc", "later", expect=r"^3$", eventually=30)], tmp_path
    )
    assert results == ["|3"]
    failing = _run(
        ["echo no"], [Rule("t.md", r"no", "never", expect="yes", eventually=1)], tmp_path
    )
    assert failing == ["its output does not match 'yes'|no"]


def test_before_runs_in_the_same_shell_and_a_failure_names_the_doc_line(tmp_path: Path) -> None:
    planned = plan(
        [Command("t.md", 7, "echo RUN")],
        [Rule("t.md", "RUN", "placeholder", before="R=r-9", replace=(("RUN", "$R; false"),))],
    )
    done = subprocess.run(
        ["bash", "-c", script(planned, tmp_path, setup="")], capture_output=True, text=True
    )
    [result] = outcomes(planned, done.stdout)
    assert result.output == "r-9" and result.problems == ["it exited 1"]
    assert report([result]) == "t.md:7: it exited 1\n  $ echo $R; false\n  (doc: echo RUN)\nr-9"


# -- the real docs --------------------------------------------------------------------------


def _documents_with_shell_blocks() -> set[str]:
    found = set()
    for path in [REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("examples/*/*.md")]:
        if commands_of(path.read_text(), str(path.relative_to(REPO))):
            found.add(str(path.relative_to(REPO)))
    return found


def _all_commands() -> list[Command]:
    return [c for doc in DOCUMENTS for c in commands_of((REPO / doc).read_text(), doc)]


def test_every_document_with_a_shell_block_is_run_by_the_docs_test() -> None:
    assert _documents_with_shell_blocks() == set(DOCUMENTS)


def test_every_rule_covers_a_command_says_why_and_plans_cleanly() -> None:
    commands = _all_commands()
    assert unused_rules(commands, RULES) == []
    assert all(rule.why.strip() for rule in RULES)
    planned = plan(commands, RULES)
    skipped = [p for p in planned if p.skipped]
    # Most commands run: a skip is the exception, each with its reason.
    assert len(skipped) * 3 < len(planned), [p.command.where for p in skipped]
    assert "__waiting()" in HELPERS
    # Some documents run against the chart on a node (tests/node/test_chart.py) too.
    on_node = [c for c in commands if c.file in CHART_DOCUMENTS]
    assert unused_rules(on_node, CHART_RULES) == []
    assert sum(not p.skipped for p in plan(on_node, CHART_RULES)) >= 8


def test_the_docs_use_only_what_a_fresh_machine_and_the_checkout_have() -> None:
    """Debian has `python3`, not `python`; the project's libraries are in `.venv` only."""
    for command in _all_commands():
        assert not re.search(r"(^|[\s;|&(])python(\s|$)", command.text), (
            f"{command.where}: `python` is not on a fresh Debian: use python3, or "
            f".venv/bin/python for what needs the project's libraries: {command.text}"
        )
