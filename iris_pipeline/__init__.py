"""iris-pipeline: Elexon IRIS messages to an exactly-once warehouse."""

__version__ = "0.1.0"
