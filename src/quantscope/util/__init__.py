"""Small shared helpers (no business logic)."""
