"""``python -m jupyter_gpuenv.launch``: the launcher's command line."""

import sys

from .launcher import main

sys.exit(main())
