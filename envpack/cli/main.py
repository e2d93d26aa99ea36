"""`envpack` entry point: a click group whose commands live one per module."""

from __future__ import annotations

import importlib

import click

# command name -> module under envpack.cli holding a click command of the same name
_COMMANDS = {
    "analyze": "analyze",
    "build": "build",
    "inspect": "inspect_",
    "verify": "verify",
    "runner": "runtime",
    "cache": "runtime",
}


class _LazyGroup(click.Group):
    """Import a command's module only when it runs: `envpack runner` must not load lief."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"envpack.cli.{module}")
        except ModuleNotFoundError:
            return None
        command = getattr(mod, cmd_name.replace("-", "_") + "_command", None)
        return command if isinstance(command, click.Command) else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="envpack")
def main() -> None:
    """Ship exactly the Python environment a processor needs to remote workers.

    \b
    Typical flow:
      envpack analyze myproc.py          # what does it need, and why?
      envpack build myproc.py            # envpack-<hash>.tar.gz + envpack-run
      envpack-run -e envpack-<hash>.tar.gz -- python task.py   # on a worker
    """
