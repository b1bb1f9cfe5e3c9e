"""Amaranth hardware: the FF layer engine and its units (one unit per module)."""
