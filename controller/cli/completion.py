"""`blockflow completion bash|zsh`: a shell completion script made from the parser itself.

The script completes commands and verbs (aliases too), each verb's flags, the values of
``-o`` and ``--log-format``, files for ``--kubeconfig``, namespaces and contexts (through
kubectl when it is there), and the names of runs and workflows (through ``blockflow … list
-o name`` with the namespace and context already typed). Load it with
``source <(blockflow completion bash)``, or in zsh ``source <(blockflow completion zsh)``.
"""

from __future__ import annotations

import argparse
import sys

from controller.cli.common import SubParsers

#: flags whose next word is their value
VALUE_FLAGS = ("-n", "--namespace", "-o", "--output", "--kubeconfig", "--context")

#: command path -> the kind whose names complete the next word
NAMES = {
    **{
        f"{run} {verb}": "run"
        for run in ("run", "runs", "wfr", "workflowrun", "workflowruns")
        for verb in ("get", "watch", "logs", "stop", "delete", "retry", "pause", "resume")
    },
    **{
        f"{wf} {verb}": "workflow"
        for wf in ("workflow", "wf", "workflows", "bfwf")
        for verb in ("get", "activate", "pause", "archive", "trigger", "url")
    },
    "approve": "run",
    "reject": "run",
}


def _tree(parser: argparse.ArgumentParser) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(command path -> its subcommands, command path -> its flags)."""
    words: dict[str, list[str]] = {}
    flags: dict[str, list[str]] = {}
    value_flags: set[str] = set(VALUE_FLAGS)

    def visit(node: argparse.ArgumentParser, path: str) -> None:
        own: list[str] = []
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                words[path] = list(action.choices)
                for name, child in action.choices.items():
                    visit(child, f"{path} {name}".strip())
            else:
                own += action.option_strings
                if action.option_strings and action.nargs != 0:
                    value_flags.update(action.option_strings)
        flags[path] = own

    visit(parser, "")
    flags["\0value"] = sorted(value_flags)
    return words, flags


def bash_script(parser: argparse.ArgumentParser, command: str = "blockflow") -> str:
    import shlex

    words, flags = _tree(parser)
    value_flags = flags.pop("\0value")

    def key(path: str) -> str:
        # Words joined by "/", unquoted: zsh keeps quotes in a subscript as part of the key.
        return path.replace(" ", "/") or "."

    def table(name: str, entries: dict[str, list[str]]) -> str:
        lines = [f"    {name}[{key(k)}]={shlex.quote(' '.join(v))}" for k, v in entries.items()]
        return "\n".join(lines)

    names = "\n".join(f"    _blockflow_names[{key(k)}]={v}" for k, v in NAMES.items())
    value_pattern = "|".join(value_flags)
    return f"""# {command} completion for bash (and zsh through bashcompinit)
# Load it: source <({command} completion bash)
declare -gA _blockflow_words _blockflow_flags _blockflow_names 2>/dev/null || {{
    typeset -gA _blockflow_words _blockflow_flags _blockflow_names
}}
_blockflow_init() {{
{table("_blockflow_words", words)}
{table("_blockflow_flags", flags)}
{names}
}}
_blockflow_init

_blockflow() {{
    local cur prev word cmdpath="" i skip=0
    local -a scope=()
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev=""
    (( COMP_CWORD > 0 )) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    COMPREPLY=()
    case "$prev" in
        -o|--output) COMPREPLY=($(compgen -W "json yaml name wide" -- "$cur")); return 0 ;;
        --log-format) COMPREPLY=($(compgen -W "auto json console" -- "$cur")); return 0 ;;
        --kubeconfig|--input-file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
        --context)
            COMPREPLY=($(compgen -W "$(kubectl config get-contexts -o name 2>/dev/null)" -- "$cur"))
            return 0 ;;
        -n|--namespace)
            COMPREPLY=($(compgen -W "$(kubectl get namespaces -o name 2>/dev/null \\
                | sed 's|^namespace/||')" -- "$cur"))
            return 0 ;;
    esac
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word="${{COMP_WORDS[i]}}"
        if (( skip )); then
            skip=0
            continue
        fi
        case "$word" in
            -n|--namespace|--kubeconfig|--context)
                scope+=("$word" "${{COMP_WORDS[i+1]}}"); skip=1; continue ;;
            {value_pattern}) skip=1; continue ;;
            -*) continue ;;
        esac
        if [[ -n "${{_blockflow_words[${{cmdpath:-.}}]}}" && \\
              " ${{_blockflow_words[${{cmdpath:-.}}]}} " == *" $word "* ]]; then
            cmdpath="${{cmdpath:+$cmdpath/}}$word"
        fi
    done
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "${{_blockflow_flags[${{cmdpath:-.}}]}}" -- "$cur"))
        return 0
    fi
    if [[ -n "${{_blockflow_words[${{cmdpath:-.}}]}}" ]]; then
        COMPREPLY=($(compgen -W "${{_blockflow_words[${{cmdpath:-.}}]}}" -- "$cur"))
        return 0
    fi
    local kind="${{_blockflow_names[$cmdpath]}}"
    if [[ -n "$kind" ]]; then
        COMPREPLY=($(compgen -W "$("${{COMP_WORDS[0]}}" "$kind" list -o name "${{scope[@]}}" \\
            2>/dev/null | sed 's|^[^/]*/||')" -- "$cur"))
    fi
    return 0
}}
complete -F _blockflow {command}
"""


def zsh_script(parser: argparse.ArgumentParser, command: str = "blockflow") -> str:
    body = bash_script(parser, command)
    return (
        f"# {command} completion for zsh (the bash script through bashcompinit)\n"
        f"# Load it: source <({command} completion zsh)\n"
        "autoload -U +X compinit && compinit\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + body
    )


def _cmd_completion(args: argparse.Namespace) -> int:
    from controller.cli import build_parser

    parser = build_parser()
    script = bash_script(parser) if args.shell == "bash" else zsh_script(parser)
    sys.stdout.write(script)
    return 0


def add_completion_command(sub: SubParsers[argparse.ArgumentParser]) -> None:
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script. bash: source <(blockflow completion bash), "
        "or save it in /etc/bash_completion.d/blockflow. zsh: source <(blockflow completion zsh).",
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(func=_cmd_completion)
