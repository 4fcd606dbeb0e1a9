"""The ground floor, imported by every layer and importing none: the user-error root (errors.py), atomic writes,
dtype names and devices, resource paths, disk space, video export, sample sidecars and the static-video check."""
