"""Command-line programs: the demo, benchmarks, the synthetic rig publisher and checkpoint inspection."""
