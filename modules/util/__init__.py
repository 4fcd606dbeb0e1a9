"""Small helpers shared by everything: atomic writes, device and dtype names, resource paths, video export."""

__all__ = ["atomic", "device", "resources", "sample_export", "stop_point", "video_checks", "video_export"]
