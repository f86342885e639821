"""Governor v3 design configs (importable by the other experiments)."""
