"""The seed papers' classification networks, registered as architectures (entry-point group
``lungtk.architectures``) so model files can rebuild them."""

from lungtk.cls.networks.ggn_cascade import GGNCascade
from lungtk.cls.networks.ggn_cnn import GGNClassifier
from lungtk.cls.networks.luna_model import LunaModel

__all__ = ["GGNCascade", "GGNClassifier", "LunaModel"]
