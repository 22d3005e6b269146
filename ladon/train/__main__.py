"""``python -m ladon.train CONFIG.yaml`` (also under ``torchrun --nproc_per_node N -m ladon.train CONFIG.yaml``)."""

import sys

from .pipeline import train_main

sys.exit(train_main())
