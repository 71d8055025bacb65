"""Cluster configs and the tools around them: offline validation, plan-to-node fit, private local heads."""
