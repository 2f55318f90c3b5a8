"""The one exception tree, grouped by what the caller does about it.

    GreennannyError
    ├── ConfigError          fix the config file or the command line; message names the dotted key
    ├── InputError           the data is bad: keep it as a dead letter, go on
    │   ├── DecodeError      payload bytes/JSON could not be turned into points (names field/offset)
    │   └── UnknownDevice    a device that is not in the registry (reason `unknown_device`)
    ├── StoreError           the store could not do it
    │   ├── StoreUnavailable retry later (locked, disk full, server down)
    │   │   └── DiskFull     no space left where the store lives: free some, writes resume
    │   ├── SchemaVersionError  refuse to open: file from another schema version
    │   └── NotSupported     the backend lacks this capability
    ├── ModelError           the model registry could not do it
    │   ├── ArtifactRefused  a model artifact is missing or its sha256 differs: fall back
    │   ├── UnknownVersion   no such series or version in the registry (names both)
    │   └── ExportFailed     an MLflow server refused an export or could not be reached
    ├── BrokerError          MQTT connection/subscription problems (paho errors translated here)
    ├── NotifyError          an alert notifier did not deliver an event
    │   ├── NotifyUnavailable  retry later (receiver or broker down, timeout, 5xx, 408, 429)
    │   └── NotifyRefused      the receiver refused this event (another 4xx): failed, never retried
    └── NodeNotRunning       the CLI asked a node's API that is not there

Third-party errors (paho, duckdb, httpx) are caught only in the adapter that calls them and
re-raised as one of these with `from exc`.
"""

from __future__ import annotations


class GreennannyError(Exception):
    """Base of every error greennanny raises on purpose."""


class ConfigError(GreennannyError):
    """The configuration (file or command line) is invalid; the message names the key path."""


class InputError(GreennannyError):
    """A message or file row that cannot be used; `reason` is a short machine-readable code."""

    reason: str = "invalid_input"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DecodeError(InputError):
    """Bytes or JSON that a decoder could not turn into points.

    `field` names what was wrong and `offset` the byte position in a binary payload, so the dead
    letter tells an operator where to look; `device`, where the envelope knows it, files the dead
    letter under its device (codec errors are counted per device).
    """

    reason = "decode_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        offset: int | None = None,
        reason: str | None = None,
        device: str = "",
    ) -> None:
        super().__init__(message, reason=reason)
        self.field = field
        self.offset = offset
        self.device = device


class UnknownDevice(InputError):
    """A device that is not in the registry; `device` is its id so it can be listed and onboarded."""

    reason = "unknown_device"

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message)
        self.device = device


class StoreError(GreennannyError):
    """The store could not complete an operation."""


class StoreUnavailable(StoreError):
    """Temporary: retry later (file locked by another process, disk full, server down)."""


class DiskFull(StoreUnavailable):
    """The filesystem holding the store has no space left. Nothing committed is damaged; writes
    succeed again once space is freed. `path` is the store file, `free_bytes` what was free."""

    def __init__(self, message: str, *, path: str = "", free_bytes: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.free_bytes = free_bytes


class SchemaVersionError(StoreError):
    """The store file was written by another schema version; refused rather than damaged."""


class NotSupported(StoreError):
    """The backend does not have this capability."""


class ModelError(GreennannyError):
    """The model registry could not do what was asked."""


class ArtifactRefused(ModelError):
    """A model artifact that is missing, unreadable or not the bytes recorded at save (sha256):
    it is never loaded; the caller falls back and records why."""


class UnknownVersion(ModelError):
    """A series or version that the registry does not hold; the message names what was asked."""


class ExportFailed(ModelError):
    """The MLflow server refused or could not be reached; the message names the call and why."""


class BrokerError(GreennannyError):
    """MQTT connection or subscription failure."""


class NodeNotRunning(GreennannyError):
    """No node answers at the configured API URL."""


class NotifyError(GreennannyError):
    """An alert notifier did not deliver an event."""


class NotifyUnavailable(NotifyError):
    """Temporary: the receiver or broker is down, timed out or answered 5xx, 408 or 429; the
    dispatcher retries with backoff."""


class NotifyRefused(NotifyError):
    """The receiver refused this event (a 4xx other than 408 and 429): retrying cannot help, the
    delivery is marked failed with the answer."""
