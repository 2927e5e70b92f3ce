"""What a suite leaves on disk: files written atomically, run records, statistics, the results store."""
