"""Reusable pyinfra deploys (``@deploy``) composed from the operations."""
