"""Runners: the work behind each `bench` subcommand (compose config → do the job → write outputs + config)."""
