"""Warm kernels: kernels started ahead per environment and handed to notebooks.

pool_config.py (the settings, what can be served), kernel_code.py (the silent cells),
warm_kernel.py (one kernel), pool.py (one environment's kernels), pools.py (all pools of
a server, tended in the background), handout.py (the server's start path adopting one).
"""
