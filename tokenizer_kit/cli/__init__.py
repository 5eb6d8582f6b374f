"""The typer CLI (``tokenizer-kit``). Thin: parse, call the library, render."""

__all__: list[str] = []
