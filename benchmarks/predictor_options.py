"""`--set KEY=VALUE` Predictor options shared by the predictor benchmark scripts.

Only options the current Predictor has are accepted; the screening options removed after
the commit named by ``nasflow.predictors.checkpoint.REMOVED_AFTER`` (docs/RESULTS.md: no
gain) are refused with that commit, which still runs them.
"""
from __future__ import annotations

import ast


def add_set_option(parser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Predictor option, repeatable")


def predictor_options(items) -> dict:
    """{'dim': 64, 'flow_readout': 'sum', ...} from ['dim=64', ...]; values are Python literals, else strings."""
    from nasflow.predictors import Predictor, checkpoint

    options = {}
    for item in items:
        key, _, text = item.partition("=")
        if key in checkpoint.REMOVED_OPTIONS or key in checkpoint.INERT_OPTIONS:
            raise SystemExit(f"--set {key}: removed after nasflow commit {checkpoint.REMOVED_AFTER} (docs/RESULTS.md "
                             "recorded no gain); check out that commit to run it")  # fmt: skip
        if key not in Predictor.option_names():
            raise SystemExit(f"--set {key}: not a Predictor option; choose from {', '.join(Predictor.option_names())}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options
