"""mcl_video.motion"""
