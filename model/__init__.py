"""The network (model/network.py), where it runs (model/placement.py), what it predicts (model/predict.py) and
what a checkpoint records of it (model/checkpoint.py). model.placement comes first: its first import, utils, arms
the Ctrl-C guard before torch loads (for `python -m model`, this package is imported before model/__main__.py)."""
from model.placement import Machine, Placement, place, resolve_placement  # isort: skip
from model.network import HybridCNN, build_model, count_parameters

__all__ = ["HybridCNN", "Machine", "Placement", "build_model", "count_parameters", "place", "resolve_placement"]
