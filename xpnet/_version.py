"""xpnet's version, in a module of its own so that any floor can name it without importing the package's
``__init__`` (which would make every module that reports the version depend on the top of the house)."""

__version__ = "0.1.0"
