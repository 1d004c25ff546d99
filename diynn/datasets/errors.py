"""Errors of the data-set loaders."""


class DatasetError(ValueError):
    """A data file that is corrupt, truncated, of the wrong size or failing its checksum."""


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are nowhere on this machine and could not be downloaded."""
