"""``python -m idguide.cli`` (what ``accelerate launch`` and ``torchrun`` start)."""

import sys

from . import main

sys.exit(main())
