"""Static analysis: what a processor imports, and which distributions and libraries that means."""
