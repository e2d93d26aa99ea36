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
# command name -> the first paragraph of its help, for `envpack --help` to list the commands
# without importing them (rich, the analyzer, lief); tests/cli check it against the commands.
SHORT_HELP = {
    "analyze": "Find every import and native library PROCESSORS need, and say why.",
    "build": "Build envpack-<hash>.tar.gz from SPEC (default ./envpack.json) or from PROC.py "
    "files.",
    "cache": "Inspect or prune this node's cache of unpacked environments.",
    "inspect": "Show what ENV.tar.gz holds (without unpacking it).",
    "runner": "Print the path of envpack-run (for coffea's wrapper= or a shell).",
    "verify": "Unpack ENV.tar.gz to a temp dir, check it against its manifest, import what it "
    "ships.",
}


class _LazyGroup(click.Group):
    """Import a command's module only when it runs: `envpack runner` must not load lief."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from SHORT_HELP, shortened as click shortens a command's help."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = [(n, click.Command(n, help=SHORT_HELP[n]).get_short_help_str(limit)) for n in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
