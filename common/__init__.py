"""Shared, tested parts of the DQN scripts.

Importing this package does nothing by itself: no environment is registered, no
TensorFlow session is configured and no file is read. Each module is imported
where it is used.
"""
