"""Scheduled work: polling sources, planning digests and sending deliveries.

The scheduler is only a timer. What is due lives in the tables; every unit of work is claimed
with a lease, so any number of processes on PostgreSQL (one on SQLite) share it safely.
"""
