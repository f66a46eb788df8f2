from model.network import HybridCNN, count_parameters
from model.placement import Machine, Placement, resolve_placement

__all__ = ["HybridCNN", "Machine", "Placement", "count_parameters", "resolve_placement"]
