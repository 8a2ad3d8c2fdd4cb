"""Performance predictors: DGL graph batching, GNN encoders, FGP pre-training, `Predictor`."""
from .predictor import Predictor

__all__ = ["Predictor"]
