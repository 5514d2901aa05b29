"""What joins both stages: the command line (``cli``), inference (``predict``), the demo, configs, executors and
benches."""
