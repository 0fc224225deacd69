"""``python -m heatmap_client`` is ``heatmap-client``."""

import sys

from .cli import main

sys.exit(main())
