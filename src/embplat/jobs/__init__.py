"""Jobs: recorded in the catalog, their tasks run here or on workers (see :mod:`.runner`)."""
