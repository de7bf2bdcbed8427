"""Starting and driving tracker and peer processes: shared by tests, demo, bench and swarm."""
