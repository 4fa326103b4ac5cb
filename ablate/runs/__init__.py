"""Run directories: what an experiment run writes, atomically, so that nothing is lost."""
