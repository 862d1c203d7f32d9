"""``python -m jupyter_gpuenv.broker --config FILE``: the Hub-managed broker service."""

from .app import main

main()
