"""The fixed facts every test agrees on, each defined once."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
EVENTS = ROOT / "events"
FUNCTIONS = ROOT / "functions"

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
TABLE_NAME = "gatekey-test"
PEPPER_NAME = "gatekey-test-pepper"
NOW = 1_800_000_000  # 2027-01-15T08:00:00Z: a fixed "now" for tests that need one

ISSUER = "https://auth.example.com"
# The API the authorizer guards: a method ARN is this plus "/<METHOD>/<path>".
ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:a1b2c3d4e5/v1"
# The actor of audit events written straight to a store, and the admin API's default caller.
ADMIN = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/platform-admin"
# A consumer's delivery secret, for tokens that rotate automatically.
DELIVERY = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:bot/creds-AbCdEf"
# A signing key for functions that must be configured with one but never sign.
UNUSED_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/unused-here"
# The admin API's collection of tokens.
BASE = "/admin/service-tokens"
