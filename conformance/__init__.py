"""Conformance suite for from-scratch backprop implementations: ``pytest conformance --impl=X``."""
