"""What a run tells: the run log (run_log.py), JSON-lines events for the window (run_events.py), the start report
and memory warning (run_start.py), the diagnostics report (diagnostics.py) and the run's log file with the library
notices kept off the terminal (library_messages.py)."""
