"""Creating and removing conda environments from environment.yml (see create.py)."""
