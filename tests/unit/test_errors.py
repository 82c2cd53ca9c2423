import inspect

import pytest

from gatekey import errors

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.GatekeyError)
]


def test_every_error_has_its_own_stable_reason_code() -> None:
    reasons = [cls.reason for cls in ERROR_CLASSES]
    assert len(reasons) == len(set(reasons)) > 10
    assert all(reason.islower() and " " not in reason for reason in reasons)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_carries_a_message_and_is_a_gatekey_error(
    cls: type[errors.GatekeyError],
) -> None:
    error = (
        cls("field", "is wrong")  # type: ignore[call-arg]
        if issubclass(cls, errors.ValidationError)
        else cls("is wrong")
    )
    assert isinstance(error, errors.GatekeyError)
    assert "is wrong" in error.message
    assert str(error) == error.message
