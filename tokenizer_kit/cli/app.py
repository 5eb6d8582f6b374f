"""The ``tokenizer-kit`` command: one module per verb, each thin over the library.

A verb's options are derived from its config dataclasses when the verb is first looked up,
so ``tokenizer-kit lookup ...`` never imports the modules (and torch) that ``align`` needs.
"""

from __future__ import annotations

import importlib

import typer
from typer.core import TyperGroup

from .. import __version__

# verb -> the module that defines it (each module has `register(app)`), in --help order
_VERBS = {
    "pipeline": "_pipeline",
    "validate": "_pipeline",
    "presets": "_pipeline",
    "extract": "_extract",
    "mine-pairs": "_mine_pairs",
    "align": "_align",
    "embed": "_embed",
    "embed-text": "_embed_text",
    "plan": "_plan",
    "build-codebook": "_build",
    "index": "_index",
    "lookup": "_index",
    "import-index": "_index",
    "assign": "_assign",
    "compact": "_compact",
    "report": "_report",
    "evaluate-retrieval": "_evaluate_retrieval",
}


def _load(module: str) -> dict[str, object]:
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    importlib.import_module(f"{__package__}.{module}").register(sub)
    return dict(typer.main.get_group(sub).commands)


class _LazyGroup(TyperGroup):
    """Builds a verb's command (and imports its module) only when it is looked up."""

    def list_commands(self, ctx) -> list[str]:
        return list(_VERBS)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands and cmd_name in _VERBS:
            self.commands.update(_load(_VERBS[cmd_name]))
        return self.commands.get(cmd_name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        """Usage errors (an unknown option, a missing argument, a value of the wrong type)
        print as one ``error:`` line on stderr like every other error, exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        import sys

        from typer._click import exceptions as cx

        from ._common import fail

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except cx.NoArgsIsHelpError as e:  # `tokenizer-kit VERB` alone: its help, as before
            e.show()
            sys.exit(e.exit_code)
        except cx.UsageError as e:
            verb = e.ctx.command_path if e.ctx is not None else "tokenizer-kit"
            try:
                fail(f"{e.format_message()} (see `{verb} --help`)", code=e.exit_code)
            except typer.Exit as x:
                sys.exit(x.exit_code)
        except cx.Abort:
            fail_code = 1
            sys.stderr.write("error: aborted\n")
            sys.exit(fail_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="tokenizer-kit",
    help="Semantic IDs for generative recommenders: features -> alignment -> RQ-Kmeans / RQ-VAE -> SID index.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)


def _version_callback(value: bool):
    if value:
        typer.echo(f"tokenizer-kit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
):
    """tokenizer-kit: build, assign and evaluate semantic IDs."""


if __name__ == "__main__":  # python -m tokenizer_kit.cli.app
    app()
