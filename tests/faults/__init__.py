"""Fault suite (issue 7): every command under backend and platform faults ends with a clear reply."""
