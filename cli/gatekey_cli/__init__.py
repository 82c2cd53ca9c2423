"""`gatekey`: the admin CLI for service tokens (SigV4-signed calls to the admin API)."""
