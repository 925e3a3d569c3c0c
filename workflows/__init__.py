"""Bindings of the steps: parameters, Hera templates, KFP wrapper, submission, local runner, CLI."""
