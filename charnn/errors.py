"""Typed errors. Each message says what is wrong and how to fix it.

Only the CLI turns these into exit codes: ``exit_code`` is 2 for a mistake in how a
command was called (a bad option value, a folder that must not be clobbered) and 1
for a problem found while running (bad corpus text, a broken checkpoint).
"""

from __future__ import annotations


class CharnnError(Exception):
    """Base class of every error charnn reports to a user."""

    exit_code = 1


class ConfigError(CharnnError):
    """A setting is out of range or contradicts another one."""

    exit_code = 2


class CorpusError(CharnnError):
    """Corpus text cannot be read or used for training or evaluation."""


class CorpusFetchError(CorpusError):
    """A named corpus cannot be downloaded, read from a mirror, or verified against its sha256."""


class TokenizerError(CharnnError):
    """A tokenizer cannot be built, loaded or applied."""


class TokenizerOptionError(TokenizerError, ConfigError):
    """A tokenizer option is unknown or out of range: a usage error (exit 2), caught as a TokenizerError too."""


class CheckpointError(CharnnError):
    """A run folder is missing, incomplete, or not one charnn can load."""


class WrongRunKind(CheckpointError):
    """A run of one kind (a classifier, say) was given to a command for another."""

    exit_code = 2


class RunFolderError(CharnnError):
    """The output folder cannot be used without risking a user's files."""

    exit_code = 2


class TrainingDiverged(CharnnError):
    """Training kept producing non-finite losses even after rolling back."""


class RequestError(CharnnError):
    """A request to `charnn serve` that cannot be answered as asked: the HTTP status it gets, the
    request parameter at fault, and OpenAI's error type for it."""

    def __init__(
        self, message: str, *, param: str | None = None, status: int = 400, kind: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.kind = param, status, kind


def as_json(value: object) -> str:
    """A request's value as its JSON spelled it (true, null, "x", NaN), for a message; cut to 60 characters."""
    import json

    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
