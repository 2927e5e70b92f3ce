"""The pipeline: suite config, plugins, runs, the training loop under its budget, evaluation."""
