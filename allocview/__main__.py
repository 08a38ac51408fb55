"""`python -m allocview ...` is `allocview ...`."""

import sys

from .cli import main

sys.exit(main())
