"""HybridCNN and where it runs. model.placement comes first: its first import, utils, arms the Ctrl-C guard
before torch loads (for `python -m model`, this package is imported before model/__main__.py runs)."""
from model.placement import Machine, Placement, resolve_placement  # isort: skip
from model.network import HybridCNN, count_parameters

__all__ = ["HybridCNN", "Machine", "Placement", "count_parameters", "resolve_placement"]
