"""The coolie demo lakehouse as a ``dg`` project: its components live in ``defs/``."""
