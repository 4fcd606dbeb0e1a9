"""Video data for any model family: concepts and captions, media decoding, frame windows, buckets, the
cache and the pipeline that feeds batches (a plugin's data loader wires its encoders into it).
"""
