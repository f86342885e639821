"""Training configurations: Python files exposing ``get_config()`` (ml_collections)."""
