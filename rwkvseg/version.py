"""The package version, defined here once (pyproject.toml, the CLI and every record read it)."""
__version__ = "0.1.0"
