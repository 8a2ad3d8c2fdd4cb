"""The composition layer: the only core code that wires the rooms (spaces, predictors, searchers) together.

A run spec (``nasflow.spec.RunSpec``, completed with the defaults its searcher declares) becomes a
space, an oracle, a searcher and a predictor here (``runs``), and so do
a grid of runs (``compare``), a search shared by workers through an Optuna storage (``distributed``)
and a zero-cost warm start (``warm_start``). The pure core below it (types, errors, metrics, the loop,
the journal, the run spec) imports none of the rooms; ``tests/test_layers.py`` holds both to that.
"""
