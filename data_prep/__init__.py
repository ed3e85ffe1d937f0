"""Dataset converters into the dual-prompt Parquet schema, the synthetic grounded set, validate/inspect."""

try:  # every converter needs pyarrow; say which Python to use instead of a bare ModuleNotFoundError later
    import pyarrow  # noqa: F401
except ModuleNotFoundError as err:  # pragma: no cover - exercised by a subprocess test with a bare Python
    import sys

    raise ModuleNotFoundError(
        f"data_prep needs {err.name}, which this Python ({sys.executable}) lacks: use the project's environment "
        f"(`bash scripts/test.sh --setup` creates .venv-test; then `.venv-test/bin/python -m data_prep...`)",
        name=err.name) from None
