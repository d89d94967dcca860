"""lungtk.fleischner: follow-up recommendations by the 2017 Fleischner guidelines and the LNDb challenge's
scoring, seed 000's learned predictor, and agreement metrics. Torch-free.

    >>> from lungtk.fleischner import Nodule, Texture, recommend
    >>> recommend([Nodule(Texture.SOLID, diameter_mm=7.0)], risk="low").category
    1
"""

from lungtk.fleischner.guideline2017 import Patient, Risk, recommend
from lungtk.fleischner.lndb_score import UncertainFinding, probabilities, score
from lungtk.fleischner.metrics import balanced_accuracy, confusion_matrix, weighted_kappa
from lungtk.fleischner.nodules import Nodule, Size, Texture, parse_texture
from lungtk.fleischner.result import CATEGORIES, Recommendation
from lungtk.fleischner.tables import Case, read_cases, recommend_cases

__all__ = [
    "CATEGORIES",
    "Case",
    "Nodule",
    "Patient",
    "Recommendation",
    "Risk",
    "Size",
    "Texture",
    "UncertainFinding",
    "balanced_accuracy",
    "confusion_matrix",
    "parse_texture",
    "probabilities",
    "read_cases",
    "recommend",
    "recommend_cases",
    "score",
    "weighted_kappa",
]
