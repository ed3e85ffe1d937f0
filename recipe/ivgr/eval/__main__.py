"""`python -m recipe.ivgr.eval ...`: see `recipe.ivgr.eval.main`."""

from recipe.ivgr.eval.main import main

raise SystemExit(main())
