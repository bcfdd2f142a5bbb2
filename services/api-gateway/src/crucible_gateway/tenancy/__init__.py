"""Tenants: principals, their keys and limits, and the admin API that manages them."""
