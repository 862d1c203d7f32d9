"""A gpuenv kernel for clients that run a kernelspec's ``argv`` themselves.

Clients that honour ``metadata.kernel_provisioner`` (jupyter_server, nbclient, papermill,
jupyter console) never run ``argv``; VS Code's local kernels and other simpler clients do.
For those, ``argv`` is ``python -m jupyter_gpuenv.launch --environment ID -f
{connection_file}``, run by the host's Python that has jupyter-gpuenv; see launcher.py.
"""
