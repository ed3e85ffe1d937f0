"""`python -m recipe.ivgr.preflight` (see the package doc)."""

import sys

from recipe.ivgr.preflight import main

sys.exit(main())
