"""`binbot bench`: the daemon's frame step timed stage by stage, for bundles and plain .tflite models.

measure.py loads and times the models, report.py turns the figures into tables and JSON, system.py
says what machine they were measured on, cli.py is the command.
"""
