"""``python -m crystal_client`` is ``crystal-predict``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
