"""End-to-end runs: each test starts a CLI, bundle or script process (all marked ``slow``)."""
