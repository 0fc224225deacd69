"""Generated from proto/; do not edit (make proto)."""
