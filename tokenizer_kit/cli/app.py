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
    "sid-lm": "_sid_lm",
}


def _load(module: str) -> dict[str, object]:
    from ._examples import examples

    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    importlib.import_module(f"{__package__}.{module}").register(sub)
    commands = dict(typer.main.get_group(sub).commands)
    for name, cmd in commands.items():
        _flags_as_flags(cmd)
        cmd.epilog = examples(name)
    return commands


def _flags_as_flags(cmd) -> None:
    """Show a flag (``--balanced``, ``--overwrite``) without a ``<bool>`` value in ``--help``:
    it takes none (``--balanced true`` is an error)."""
    get_params = cmd.get_params

    def flagged(ctx):
        params = get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params

    cmd.get_params = flagged


class _LazyGroup(TyperGroup):
    """Builds a verb's command (and imports its module) only when it is looked up."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params

    def list_commands(self, ctx) -> list[str]:
        return list(_VERBS)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands and cmd_name in _VERBS:
            self.commands.update(_load(_VERBS[cmd_name]))
        return self.commands.get(cmd_name)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        """Usage errors (an unknown option, a missing argument, a value of the wrong type)
        print as one ``error:`` line on stderr like every other error, exit code 2 (and, under
        ``--format json``, an ``{"error": ...}`` document on stdout)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        import sys

        from typer._click import exceptions as cx

        from ._common import EXIT_INPUT, fail

        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except cx.NoArgsIsHelpError as e:  # `tokenizer-kit VERB` alone: its help, as before
            e.show()
            sys.exit(e.exit_code)
        except cx.UsageError as e:
            verb = e.ctx.command_path if e.ctx is not None else "tokenizer-kit"
            try:
                fail(f"{e.format_message()} (see `{verb} --help`)", code=e.exit_code, json_error=_wants_json(argv), error_type="UsageError")
            except typer.Exit as x:
                sys.exit(x.exit_code)
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            sys.exit(EXIT_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


def _wants_json(argv: list[str]) -> bool:
    """``--format json`` (or ``--format=json``) among the arguments."""
    return any(a == "--format=json" or (a == "--format" and i + 1 < len(argv) and argv[i + 1] == "json") for i, a in enumerate(argv))


_HELP = """Semantic IDs for generative recommenders: features -> alignment -> RQ-Kmeans / RQ-VAE -> SID index.

Results go to stdout (--format json for machine-readable output), logs and progress to stderr.
Exit codes: 0 done; 1 an input, an artifact or the run failed (a missing or malformed file, an
output that exists, a damaged tokenizer directory); 2 the command is wrong (an unknown option,
a missing argument, a bad or conflicting setting). Errors print one line on stderr; under
--format json stdout holds {"error": {"type", "message", "exit_code"}}. TOKENIZER_KIT_DEBUG=1
shows tracebacks. Every verb takes -v (INFO logs, third-party output), -q (results and errors
only) and --log-level."""


app = typer.Typer(
    name="tokenizer-kit",
    help=_HELP,
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
