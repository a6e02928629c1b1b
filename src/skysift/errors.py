"""The one exception family of skysift: errors a user can cause and can fix."""


class SkysiftError(Exception):
    """Base class; the message names the file or key and the fix."""


class ConfigError(SkysiftError):
    """The configuration fails the schema or is inconsistent."""


class SurveyError(SkysiftError):
    """A tile, catalog or labels table is missing or malformed."""


class DataError(SkysiftError):
    """An intermediate product (HDF5, checkpoint) is missing or inconsistent."""
