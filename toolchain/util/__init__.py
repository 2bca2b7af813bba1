"""Infrastructure every layer may use: atomic writes, hashing, errors, package-data paths, the user cache."""
