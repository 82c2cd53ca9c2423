"""What the tests share: constants, AWS fakes and checks, handler harnesses, the local stack.

Plain modules that tests import (`from support.constants import NOW`); the fixtures built on
them are registered in tests/conftest.py.
"""
