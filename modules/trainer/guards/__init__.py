"""What keeps a run safe: checks before loading (preflight.py, process_count.py, host_memory_check.py), the
workspace lock, the clean stop (stop_request.py) and the window's requests taken at the same step boundary
(run_requests.py), out of GPU memory (oom.py), a non-finite loss, a save that fails (save_fallback.py)."""
