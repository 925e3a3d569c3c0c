"""What every step shares: the workspace layout, secret handling and the one error type."""
