"""mcl_video.models"""
