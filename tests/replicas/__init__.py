"""Real `tokenbot run` replicas on one PostgreSQL: the harness and the tests on it."""
