"""The claim helper refuses to print a verdict the prose contradicts, and every lesson states claims."""

import asyncio
import json
import re
from pathlib import Path

import pytest

from helpers.claims import ClaimContradicted, claim, interleaved_medians

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CLAIM_LINE = re.compile(r"^Claim: .+ — (holds|does not hold)$", re.M)


def test_claim_prints_the_verdict(capsys):
    assert claim("two is more than one", 2 > 1) is None  # nothing for a notebook cell to echo
    claim("the seed's counter is right", False, expected=False)
    out = capsys.readouterr().out.splitlines()
    assert out == ["Claim: two is more than one — holds", "Claim: the seed's counter is right — does not hold"]


@pytest.mark.parametrize("ok, expected", [(False, True), (True, False)])
def test_claim_raises_when_the_measurement_disagrees(ok, expected, capsys):
    with pytest.raises(ClaimContradicted, match="but the lesson says it"):
        claim("x", ok, expected=expected)
    assert capsys.readouterr().out == ""  # never prints the other verdict


@pytest.mark.parametrize("not_a_verdict", [1.08, 0, None, "yes", [True]])
def test_claim_needs_a_true_false_verdict(not_a_verdict):
    with pytest.raises(TypeError, match="needs a True/False verdict"):
        claim("x", not_a_verdict)


def test_interleaved_medians_interleaves_and_takes_medians():
    order, values = [], {"a": iter([5, 1, 3]), "b": iter([10, 30, 20])}

    def variant(name):
        async def measure():
            order.append(name)
            return next(values[name])
        return measure

    medians = asyncio.run(interleaved_medians({"a": variant("a"), "b": variant("b")}))
    assert medians == {"a": 3, "b": 20}
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_interleaved_medians_refuses_fewer_than_three_rounds():
    with pytest.raises(ValueError, match="at least 3"):
        asyncio.run(interleaved_medians({"a": lambda: None}, rounds=2))


def stored_claims(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    text = "".join("".join(out.get("text", "")) for cell in cells if cell["cell_type"] == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    return [m.group(0) for m in CLAIM_LINE.finditer(text)]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_lesson_prints_at_least_three_claims(notebook):
    claims = stored_claims(notebook)
    assert len(claims) >= 3, f"{notebook.name} prints {len(claims)} Claim: lines in its stored outputs"
    assert len(set(claims)) == len(claims), f"{notebook.name} repeats a claim: {claims}"
