"""The ``tokenizer-kit`` command: one module per verb, each thin over the library."""

from __future__ import annotations

import importlib

import typer

from .. import __version__

app = typer.Typer(
    name="tokenizer-kit",
    help="Semantic IDs for generative recommenders: features -> alignment -> RQ-Kmeans / RQ-VAE -> SID index.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# each module defines `register(app)`; keep one line per verb module
_COMMAND_MODULES = [
    "_build",
    "_assign",
    "_report",
    "_embed_text",
    "_index",
    "_compact",
    "_extract",
    "_pipeline",
    "_mine_pairs",
    "_align",
    "_embed",
    "_evaluate_retrieval",
    "_plan",
]


def _version_callback(value: bool):
    if value:
        typer.echo(f"tokenizer-kit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
):
    """tokenizer-kit: build, assign and evaluate semantic IDs."""


for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_name}").register(app)


if __name__ == "__main__":  # python -m tokenizer_kit.cli.app
    app()
