"""CodeMonkeys: resolve issues by scaling test-time compute."""

__version__ = "0.1.0"
