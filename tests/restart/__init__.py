"""Restart suite: SIGKILL tokenbot mid-flight and check nothing is lost or duplicated."""
