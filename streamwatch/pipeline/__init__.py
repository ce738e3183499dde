"""From a camera's frame to decisions: when to sample and what to ask (sampling), whether the picture
changed (change), recent frames for questions over several frames (frame_history), the Decision and its
sinks (decision), the latest answers (answer_log)."""
