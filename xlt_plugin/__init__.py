"""xlt_plugin: cross-language transfer learning for CTC speech recognition."""

__version__ = "0.1.0"
