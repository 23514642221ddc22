"""Source readers and destination writers."""
