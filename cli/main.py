"""Entry point of the ``nasflow`` command.

Subcommands live in their own modules and are imported only when listed or run, and
none of them imports torch or dgl at module level, so ``nasflow --help`` is instant.
Every user-caused error ends as one line on stderr and exit status 2.
"""
from __future__ import annotations

import importlib
import sys
import warnings

import click

from nasflow.errors import NasflowError, NasflowWarning

# command name -> "module:attribute"; one line per command.
COMMANDS = {
    "spaces": "nasflow.cli.info:spaces",
    "info": "nasflow.cli.info:info",
    "train-predictor": "nasflow.cli.predictor:train_predictor",
    "evaluate-predictor": "nasflow.cli.predictor:evaluate_predictor",
    "convert-checkpoint": "nasflow.cli.predictor:convert_checkpoint",
    "search": "nasflow.cli.search:search",
    "compare": "nasflow.cli.search:compare",
    "proxies": "nasflow.cli.proxies:proxies",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nasflow")
def cli():
    """Neural architecture search with an FGP-pretrained plug-in performance predictor."""


def fail(message: str) -> None:
    click.echo(f"nasflow: error: {message}", err=True)
    sys.exit(2)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """nasflow's own warnings as one line on stderr, above any progress bar; others as Python shows them."""
    if issubclass(category, NasflowWarning):
        from tqdm.auto import tqdm

        tqdm.write(f"nasflow: warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


_default_show_warning = warnings.showwarning


def main(argv=None) -> None:
    warnings.showwarning = _show_warning
    try:
        code = cli.main(args=argv, prog_name="nasflow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("nasflow: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        fail(e.format_message().replace("\n", " "))
    except NasflowError as e:
        fail(str(e).replace("\n", " "))
    except KeyboardInterrupt:
        click.echo("nasflow: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
