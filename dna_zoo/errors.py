"""One error hierarchy for dna-zoo.

Every error a user can cause is a :class:`DnaZooError`. Each carries a ``hint``: what to do
about it. The CLI turns these into one line (``error: ... (hint: ...)``) and exit code 1.
Where it helps callers, an error also subclasses the matching builtin, as huggingface_hub
does, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DnaZooError(Exception):
    """Base class of every error dna-zoo raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint on a single line, as the CLI prints them."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return text

    def __str__(self) -> str:
        return self.one_line()


class UnknownNameError(DnaZooError, KeyError):
    """A name (model, format, device, runtime...) that is not known."""

    def __init__(self, kind: str, name: str, known: Iterable[str], *, hint: str | None = None):
        known = sorted(set(known))
        self.kind = kind
        self.name = name
        self.known = known
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        if hint is None:
            if close:
                hint = f"did you mean {close[0]}?"
            elif known and len(known) <= 12:
                hint = "known: " + ", ".join(known)
        super().__init__(f"unknown {kind} '{name}'", hint=hint)

    # KeyError.__str__ would repr() the message; keep ours.
    def __str__(self) -> str:
        return self.one_line()


class ArchitectureError(DnaZooError, ValueError):
    """An architecture encoding or arch_def string that is not valid."""


class WeightsError(DnaZooError, ValueError):
    """A weights file that is missing, corrupt, unsafe, or does not fit the model."""


class WeightsUnavailableError(DnaZooError, OSError):
    """Pretrained weights that cannot be had (offline, Hub unreachable, repo or file missing).

    An ``OSError`` like huggingface_hub's own errors, so existing handlers keep working.
    """

    def __init__(self, message: str, *, hint: str | None = None, repo_id: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.repo_id = repo_id

    def __str__(self) -> str:
        return self.one_line()


class ConfigError(DnaZooError, ValueError):
    """Invalid options or settings given by the user."""


class MissingDependencyError(DnaZooError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, *, extra: str | None = None, purpose: str = "") -> None:
        self.package = package
        install = f"pip install 'dna-zoo[{extra}]'" if extra else f"pip install {package}"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"'{package}' is needed{what} but is not installed", hint=f"run `{install}`")


class DataError(DnaZooError, ValueError):
    """Input data (image folder, dataset) that is missing or unreadable."""


class FileFormatError(ConfigError):
    """A file of another kind, or written by another version of dna-zoo than this one reads."""


class OutputExistsError(DnaZooError, FileExistsError):
    """Refusing to overwrite an existing output."""

    def __init__(self, path: object) -> None:
        super().__init__(f"{path} already exists", hint="pass --force to overwrite it")


def require(module: str, *, extra: str | None = None, purpose: str = ""):
    """Import an optional dependency lazily, or raise :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(module.split(".")[0], extra=extra, purpose=purpose) from e
