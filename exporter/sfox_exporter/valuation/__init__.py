"""Valuation: live prices from sFOX's ticker feed, and what each account is worth in one quote currency."""
