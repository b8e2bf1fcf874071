"""Command-line interface: one module per command group, mounted by :mod:`.main`."""
