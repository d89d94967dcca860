"""Exceptions a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class LungtkError(Exception):
    """An error caused by input or configuration, not by a bug.

    The message is shown to the user as it is, so it should say what went wrong, with which file or
    name, and what to do about it.
    """

    exit_code = 1


class UnknownComponentError(LungtkError, KeyError):
    """A component name that no installed plugin registers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateComponentError(LungtkError):
    """A component name of one kind claimed by two distributions, none of which wins.

    Raised by ``Registry.add`` for a taken name, and by ``Registry.get`` for a name that two third-party
    plugins (or two first-party packages) register; a first-party package beats a third party silently
    but for a warning on the third party's ``PluginInfo``.
    """


class PluginLoadError(LungtkError):
    """A plugin failed to import or register while strict plugin loading was on."""
