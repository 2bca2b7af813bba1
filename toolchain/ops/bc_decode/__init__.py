"""bc_decode."""
