"""Results: the store, JSON/CSV files, terminal tables, choosing what to ship, the report."""
