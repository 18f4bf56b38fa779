"""The decision rules: the versioned policy (policy.yaml) applied to a customer's segment and figures.

Pure, no I/O beyond reading a policy file: the evaluation API and portfolio runs both decide with it,
so neither imports the other.
"""
