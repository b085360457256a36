"""mcl_video.training"""
