"""Architecture knowledge as data: generic discovery plus a small table per family."""

from .base import ADAPTERS, FamilyTable, SitePlan
from .discover import discover_sites

__all__ = ["ADAPTERS", "FamilyTable", "SitePlan", "discover_sites"]

from . import families as _families  # noqa: E402,F401  (registers the family tables)
