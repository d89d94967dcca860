"""lungtk.core: the plug-in API shared by every lungtk package and third-party plugin.

Import what a plugin needs from here::

    from lungtk.core import Candidate, hookimpl
"""

from lungtk.core.atomic import atomic_path, write_bytes, write_text
from lungtk.core.errors import DuplicateComponentError, LungtkError, PluginLoadError, UnknownComponentError
from lungtk.core.geometry import Geometry
from lungtk.core.hookspecs import hookimpl, hookspec
from lungtk.core.options import PRECISIONS, Precision, RunOptions
from lungtk.core.plugins import PluginInfo, Plugins, get_plugins, get_registry
from lungtk.core.protocols import Classifier, Detector, Segmenter, Volume
from lungtk.core.registry import KINDS, PIPELINE_KINDS, ComponentSpec, Kind, Registrar, Registry
from lungtk.core.results import Candidate, Finding, NoduleMask, equivalent_diameter

__all__ = [
    "KINDS",
    "PIPELINE_KINDS",
    "PRECISIONS",
    "Candidate",
    "Classifier",
    "ComponentSpec",
    "Detector",
    "DuplicateComponentError",
    "Finding",
    "Geometry",
    "Kind",
    "LungtkError",
    "NoduleMask",
    "PluginInfo",
    "PluginLoadError",
    "Plugins",
    "Precision",
    "Registrar",
    "Registry",
    "RunOptions",
    "Segmenter",
    "UnknownComponentError",
    "Volume",
    "atomic_path",
    "equivalent_diameter",
    "get_plugins",
    "get_registry",
    "hookimpl",
    "hookspec",
    "write_bytes",
    "write_text",
]
