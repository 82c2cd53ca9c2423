"""README's table of the authorizer's credentials names exactly the forms and headers of
gatekey.credentials, so the docs cannot drift from the code."""

import re
from pathlib import Path
from typing import Any

from gatekey.credentials import (
    ACCESS_COOKIE,
    ACCESS_TOKEN_HEADER,
    AUTHORIZATION_SCHEMES,
    HEADER_PAIRS,
    CredentialForm,
)

# The headers of each form that has its own (the pairs' are HEADER_PAIRS').
SINGLE_HEADERS = {CredentialForm.ACCESS_TOKEN_HEADER: (ACCESS_TOKEN_HEADER,)}

# Schemes as their RFCs spell them where str.title() would not (RFC 9449: "DPoP").
SCHEME_SPELLING = {"dpop": "DPoP"}

README = Path(__file__).parents[2] / "README.md"
HEADER_NAME = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)+")  # such as Gatekey-Client-Id


def readme_credential_table() -> dict[str, str]:
    """The rows of README's table under "Credentials it accepts": form cell by parameter."""
    lines = README.read_text(encoding="utf-8").split("Credentials it accepts", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:  # after the heading row and its separator
        if not line.startswith("|"):
            break
        form, parameter = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows[parameter.strip("`")] = form
    return rows


def switches(template: dict[str, Any]) -> dict[CredentialForm, str]:
    """The template parameter that switches each form, read from the authorizer's environment
    (ACCEPT_<FORM>)."""
    function = template["Resources"]["AuthorizerFunction"]["Properties"]
    variables = function["Environment"]["Variables"]
    return {form: variables[f"ACCEPT_{form.name}"]["Ref"] for form in CredentialForm}


def test_the_readme_table_has_one_row_per_credential_form(template: dict[str, Any]) -> None:
    assert sorted(readme_credential_table()) == sorted(switches(template).values())


def test_the_readme_table_names_exactly_the_credential_headers(
    template: dict[str, Any],
) -> None:
    rows = readme_credential_table()
    schemes = {form: scheme for scheme, form in AUTHORIZATION_SCHEMES.items()}
    for form, parameter in switches(template).items():
        cell = rows[parameter]
        named = {
            span.lower() for span in re.findall(r"`([^`]*)`", cell) if HEADER_NAME.fullmatch(span)
        }
        assert named == set(HEADER_PAIRS.get(form, SINGLE_HEADERS.get(form, ()))), form
        if form is CredentialForm.ACCESS_COOKIE:
            assert f"`{ACCESS_COOKIE}` cookie" in cell
        if form is CredentialForm.ACCESS_JSON:  # the JSON object's keys are Access's names
            keys = set(re.findall(r'"([^"]+)":', cell))
            assert keys == set(HEADER_PAIRS[CredentialForm.ACCESS_HEADERS])
        if form in schemes:
            spelled = SCHEME_SPELLING.get(schemes[form], schemes[form].title())
            assert f"`Authorization: {spelled} " in cell, form
