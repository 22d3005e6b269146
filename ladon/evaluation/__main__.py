"""``python -m ladon.evaluation CONFIG.yaml``: the same as ``ladon eval CONFIG.yaml``."""

import sys

from .evaluate import eval_main

sys.exit(eval_main())
