"""Sources: each turns part of the world into a (partial) Environment."""
