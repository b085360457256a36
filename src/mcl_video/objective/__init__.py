"""mcl_video.objective"""
