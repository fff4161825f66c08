"""Backends plug in by name (see simulator.llm.registry); each imports its SDK lazily."""
