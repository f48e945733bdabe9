"""Private implementation modules of optzoo (one per paper) and their shared helpers."""
