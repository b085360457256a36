"""mcl_video.data"""
