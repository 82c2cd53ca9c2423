"""Gatekey's domain core, shipped as a Lambda layer (/opt/python/gatekey)."""
