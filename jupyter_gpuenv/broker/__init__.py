"""The kernel broker: the JupyterHub service that starts users' Docker kernels for them."""
