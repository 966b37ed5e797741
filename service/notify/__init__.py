"""Delivery transports: SMTP e-mail, signed webhooks and the tokens their links carry.

Each module sends or signs one thing and returns an outcome value; none of them reads settings,
opens database sessions or decides scheduling (that is ``service.jobs``).
"""
