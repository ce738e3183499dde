"""Event clips: the recent packets of each camera, remuxed into an MP4 when an alert opens."""
