"""Exceptions a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from collections.abc import Collection


class LungtkError(Exception):
    """An error caused by input or configuration, not by a bug.

    The message is shown to the user as it is, so it should say what went wrong, with which file or
    name, and what to do about it.

    Library code cannot know which command it runs under, so advice that names a command-line option
    goes in ``advice`` with the ``option`` it names, and ``otherwise`` says what to do where the running
    command has no such option::

        LungtkError(f"{folder}: holds 3 DICOM series", option="--series",
                    advice="pick one with --series UID",
                    otherwise="convert one with `lungtk convert image FOLDER OUT --series UID`")

    ``str(error)`` is the message with ``advice``; the CLI prints :meth:`for_command` with the options
    of the command that ran.
    """

    exit_code = 1

    def __init__(
        self, *args: object, option: str | None = None, advice: str = "", otherwise: str = ""
    ) -> None:
        super().__init__(*args)
        self.option, self.advice, self.otherwise = option, advice, otherwise

    def _joined(self, hint: str) -> str:
        base = str(self.args[0]) if len(self.args) == 1 else Exception.__str__(self)
        return f"{base}; {hint}" if hint else base

    def __str__(self) -> str:
        return self._joined(self.advice)

    def for_command(self, options: Collection[str] | None) -> str:
        """The message for a command with these ``options`` (None: unknown): ``advice`` only where the
        command has ``option``, else ``otherwise``."""
        if self.option is None or options is None or self.option in options:
            return str(self)
        return self._joined(self.otherwise)


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


def missing_model_file(who: str, name: str) -> LungtkError:
    """The error of a learned component built without a model file (none shipped, none given): ``who``
    names it (``"segmenter 'dilated-unet'"``), ``name`` is what ``--weights NAME=FILE`` takes."""
    return LungtkError(
        f"{who} needs a model file",
        option="--weights",
        advice=f"pass --weights {name}=FILE (a model file of lungtk train)",
        otherwise=f"run it with `lungtk pipeline run --weights {name}=FILE` (a model file of lungtk train)",
    )
