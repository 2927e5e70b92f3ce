"""What a results folder shows: the leaderboard, figures, report.html and comparisons."""
