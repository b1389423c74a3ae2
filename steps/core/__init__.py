"""Infrastructure every step shares: settings, errors and exit codes, outputs, CLI support, image
platforms, and the names of the run contract (``names``). Imports nothing above it."""
