"""Development-side tools for running Gatekey without AWS: provisioning moto from template.yaml.

Not part of any Lambda artifact. The local stack (`make run`) grows here.
"""
