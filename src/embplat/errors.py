"""Project exceptions: every error a user can cause names the file or value and the fix."""


class EmbplatError(Exception):
    """Base class for errors the CLI reports as one red line and a non-zero exit."""


class ConfigError(EmbplatError):
    """A setting is invalid (bad URL, unknown backend, impossible value)."""


class DataError(EmbplatError):
    """Input data is missing or malformed (a folder, a split file, an image)."""


class NotFoundError(EmbplatError):
    """A named thing (class, model, image, index) does not exist."""


class IndexEmptyError(EmbplatError):
    """A query was made against an index that holds nothing to search."""


class ServiceUnavailableError(EmbplatError):
    """A server (database, broker, Qdrant) did not answer."""


class JobFailedError(EmbplatError):
    """A job run by workers ended in failure; the message carries the job's error."""


class IndexDamagedError(DataError):
    """An index file is missing, truncated or fails its checksum; ``platform doctor --repair``
    rebuilds it from the readable files or re-embeds from the catalog."""


class BusyError(EmbplatError):
    """Another process holds the write lock of an index or home; the message names it."""
