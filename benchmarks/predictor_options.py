"""`--set KEY=VALUE` Predictor options shared by the predictor benchmark scripts."""
from __future__ import annotations

import ast


def add_set_option(parser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Predictor option, repeatable")


def predictor_options(items) -> dict:
    """{'dim': 64, 'encoder_lr_scale': 0.5, ...} from ['dim=64', ...]; values are Python literals, else strings."""
    options = {}
    for item in items:
        key, _, text = item.partition("=")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options
