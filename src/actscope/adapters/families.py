"""Per-family tables, where a family's module names differ from the generic ones."""

from __future__ import annotations

from .base import ADAPTERS, with_table

# GPT-2: Conv1D layers, fc -> gelu -> proj, no gate.
ADAPTERS.register("gpt2", with_table(absent=frozenset({"gate"}), act=("act",)))
