"""dealwatch's shell: settings, database, fetching, delivery, scheduling, HTTP API and CLI.

Everything that performs I/O lives here; decisions are delegated to the pure :mod:`alerts`.
"""

__version__ = "0.1.0"
