"""Architecture knowledge as data: generic discovery plus a small table per family."""

from .base import ADAPTERS, FamilyTable, SitePlan, discover_sites
from .moe import expert_load, idle_experts

__all__ = ["ADAPTERS", "FamilyTable", "SitePlan", "discover_sites", "expert_load", "idle_experts"]

from . import families as _families  # noqa: E402,F401  (registers the family tables)
