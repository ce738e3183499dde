"""Getting frames: camera sources, frames and image preprocessing."""
