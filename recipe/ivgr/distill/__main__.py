"""`python -m recipe.ivgr.distill` (see the package doc)."""

import sys

from recipe.ivgr.distill import main

sys.exit(main())
