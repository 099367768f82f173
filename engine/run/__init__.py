"""What every method's run shares: reading and writing records, progress bars, the run directory and
its resumable steps."""
