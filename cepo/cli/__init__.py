"""The `cepo` command: every subcommand lives in this package, over the layers it drives."""

from __future__ import annotations

import sys
from typing import Any

import click

from cepo import __version__
from cepo.cli import bench, chat, evaluate, serve
from cepo.errors import CepoError


class CepoGroup(click.Group):
    """Reports a CepoError as one line with its hint, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CepoError as error:
            click.secho(f"Error: {error}", fg="red", err=True)
            if error.hint:
                click.echo(f"Hint: {error.hint}", err=True)
            sys.exit(1)


@click.group(cls=CepoGroup)
@click.version_option(__version__, prog_name="cepo")
def main() -> None:
    """cepo: a small open model that plans, executes in parallel, cross-checks and picks its best answer.

    \b
    Examples:
      cepo chat "How many r's are in strawberry?"
      cepo bench engine --json bench-engine.json
    """


main.add_command(chat.chat)
main.add_command(bench.bench)
main.add_command(evaluate.eval_group)
main.add_command(serve.serve)
main.add_command(serve.models)
