"""The layer store: a city's themed business layers in one DuckDB spatial file."""
