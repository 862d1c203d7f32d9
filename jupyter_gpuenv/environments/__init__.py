"""Environment catalog: discovery (conda, venv, docker), probing, caching and export."""
