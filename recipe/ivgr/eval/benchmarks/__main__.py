"""`python -m recipe.ivgr.eval.benchmarks NAME --input ... --out ...`: see `recipe.ivgr.eval.converter`."""

from recipe.ivgr.eval.converter import main

raise SystemExit(main())
