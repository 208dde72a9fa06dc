"""The project's own tests (of the reference, the loader, the suite and the tools)."""
