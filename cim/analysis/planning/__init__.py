"""Planning analyses."""
