"""Dataset converters into the dual-prompt Parquet schema, the synthetic grounded set, validate/inspect."""
