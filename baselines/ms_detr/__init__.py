"""MS-DETR and Moment-DETR moment-retrieval baselines on QVHighlights-format folders, and the QVHighlights
metrics.

See README.md in this folder for the ported components, the deviations and the tests.
"""

from .config import MomentConfig, load_config
from .qvh_eval import evaluate
from .train import train_moment_model

__all__ = ["MomentConfig", "evaluate", "load_config", "train_moment_model"]
