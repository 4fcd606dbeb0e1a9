"""Reading media as a viewer sees it: media_io.py (the entry point), media_info.py, as_shown.py (rotation, pixel
aspect, timestamps, edit lists), video_readers.py (decord, PyAV), image_io.py, folder_walk.py, picture_filters.py
(deinterlacing, the HDR report) and corrections.py (what was corrected, per file)."""
