"""sqstaskmaster's README usage, runnable, with only its import lines changed."""
