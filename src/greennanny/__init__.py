"""greennanny: edge node for controlled-environment agriculture."""

__version__ = "0.1.0"
