"""Kernel provisioners (Docker containers, conda/venv prefixes) and their kernelspecs."""
