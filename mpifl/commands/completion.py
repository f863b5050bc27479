"""`mpifl completion bash`: a bash completion script made from the argument parser, so it
knows every subcommand and option there is."""

from __future__ import annotations

import argparse
import shlex

SCRIPT = """# mpifl's bash completion: eval "$(mpifl completion bash)" (e.g. in ~/.bashrc)
declare -gA _mpifl_verbs=({verbs})
declare -gA _mpifl_options=({options})
_mpifl() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" path=mpifl word
    for word in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case " ${{_mpifl_verbs[$path]-}} " in
            *" $word "*) path="$path $word" ;;
        esac
    done
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${{_mpifl_options[$path]-}}" -- "$cur")
    elif [[ -n ${{_mpifl_verbs[$path]-}} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${{_mpifl_verbs[$path]-}}" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")  # a name per line: spaces kept
    fi
}}
complete -o filenames -F _mpifl mpifl
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `completion`."""
    example = 'example (in ~/.bashrc):\n  eval "$(mpifl completion bash)"'
    p = sub.add_parser("completion", help="print a shell completion script", epilog=example)
    p.add_argument("shell", choices=("bash",), help="the shell (zsh: bashcompinit, then bash)")


def _walk(parser: argparse.ArgumentParser, path: str, verbs: dict, options: dict) -> None:
    """Each command path's subcommands and options, depth first."""
    options[path] = sorted(o for a in parser._actions for o in a.option_strings)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            verbs[path] = sorted(action.choices)
            for name, child in action.choices.items():
                _walk(child, f"{path} {name}", verbs, options)


def script(parser: argparse.ArgumentParser) -> str:
    """The bash completion script of `parser` (the `mpifl` parser)."""
    verbs: dict[str, list[str]] = {}
    options: dict[str, list[str]] = {}
    _walk(parser, "mpifl", verbs, options)

    def table(entries: dict[str, list[str]]) -> str:
        return " ".join(
            f"[{shlex.quote(k)}]={shlex.quote(' '.join(v))}" for k, v in entries.items()
        )

    return SCRIPT.format(verbs=table(verbs), options=table(options))
