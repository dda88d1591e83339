"""Exploratory analysis of rating stores: plots and a Markdown summary."""
