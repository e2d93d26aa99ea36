"""`envpack` itself: the command group, its help, and what it loads to print it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click

from envpack.cli.main import _COMMANDS, SHORT_HELP, main


def test_help_lists_the_commands_without_importing_them() -> None:
    code = (
        "import sys\n"
        "from envpack.cli.main import main\n"
        "try:\n"
        "    main(['--help'], prog_name='envpack')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('rich', 'envpack.cli.'))))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *help_text, loaded = res.stdout.rstrip("\n").split("\n")
    assert loaded == "['envpack.cli.main']"  # no command module, no rich
    listed = "\n".join(help_text).split("Commands:\n", 1)[1]
    assert [line.split()[0] for line in listed.splitlines()] == sorted(_COMMANDS)


def test_short_help_is_each_commands_own() -> None:
    # The table stands in for the commands in --help: it must say what each command says.
    ctx = click.Context(main)
    for name, module in _COMMANDS.items():
        command = getattr(importlib.import_module(f"envpack.cli.{module}"), f"{name}_command")
        assert command.help is not None
        assert SHORT_HELP[name] == " ".join(command.help.split("\n\n")[0].split()), name
        assert main.get_command(ctx, name) is command
