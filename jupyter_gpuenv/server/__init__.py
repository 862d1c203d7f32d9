"""The Jupyter Server extension: wiring and thin REST handlers."""
