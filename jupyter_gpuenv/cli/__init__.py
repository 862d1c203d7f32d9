"""The ``jupyter gpuenv`` command: the same catalog, GPU and doctor modules as the server."""
