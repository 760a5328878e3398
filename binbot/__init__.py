"""BinBot: a waste-sorting image classifier, from workstation training to a Raspberry Pi service."""

__version__ = "0.1.0"
