"""The package version, in one place: ``lavt.__version__``, ``lavt --version`` and the
wheel's metadata (``pyproject.toml`` reads it through setuptools' dynamic version)."""

__version__ = "0.2.0.dev0"
