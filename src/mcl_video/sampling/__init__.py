"""mcl_video.sampling"""
