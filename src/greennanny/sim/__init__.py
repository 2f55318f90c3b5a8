"""Built-in simulators, so a new user without data still sees the whole job."""
