"""Test harness: Docker engine, locally built test images, conda prefixes and venvs."""
