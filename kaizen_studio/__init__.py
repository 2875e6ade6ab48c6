"""Kaizen Studio command line."""
