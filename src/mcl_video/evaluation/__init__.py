"""mcl_video.evaluation"""
