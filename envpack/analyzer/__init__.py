"""Static analysis: what a processor imports, which distributions and native libraries that means."""
