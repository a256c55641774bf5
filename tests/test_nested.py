"""The nested choice by speaker (``ser-jax select``, ser_jax.research.nested) on small
synthetic cv directories: no training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ser_jax.errors import ConfigError
from ser_jax.research.nested import card_lines, select

SPEAKERS = ("A", "B", "C")
# Which speakers each member decides right (both of the speaker's files), by kind: members'
# probabilities are P(anger) 0.9 / 0.1 when right, 0.2 / 0.8 when wrong.
RIGHT = {"m1": {"A", "B"}, "m2": {"B", "C"}}

CANDIDATES = """
MEMBERS = {"m1": "recipe one", "m2": "recipe two"}
CANDIDATES = {"one": {"m1": 1}, "pair": {"m1": 1, "m2": 3}}
VIEWS = ("plain",)
"""


def _member(root: Path, right: set[str], kinds=("test", "test_speaker_bn")) -> None:
    """A cv directory as `ser-jax cv` writes it: one fold per speaker, seed 0, each speaker's
    two files (an anger and a boredom one) decided right when the speaker is in ``right``."""
    per_fold = []
    for k, speaker in enumerate(SPEAKERS):
        run = root / f"fold{k}-{speaker}" / "seed0"
        run.mkdir(parents=True)
        ok = speaker in right
        rows = [
            (f"{speaker}1", "anger", 0.9 if ok else 0.2),
            (f"{speaker}2", "boredom", 0.1 if ok else 0.8),
        ]
        for kind in kinds:
            with open(run / f"{kind}_predictions.jsonl", "w") as f:
                for utt, label, p in rows:
                    probs = {"anger": p, "boredom": round(1 - p, 5)}
                    f.write(json.dumps({"utt_id": utt, "label": label, "probs": probs}) + "\n")
        per_fold.append({"fold": k, "speaker": speaker, "seed": 0})
    summary = {
        "per_fold": per_fold,
        "labels": ["anger", "boredom"],
        "pooled": {"test_uar": {"mean": len(right) / 3}},
    }
    (root / "cv_summary.json").write_text(json.dumps(summary))


def _setup(tmp_path: Path, right=RIGHT, text=CANDIDATES, **kinds) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    for member, ok in right.items():
        _member(runs / member, ok, **kinds.get(member, {}))
    cands = tmp_path / "cands.py"
    cands.write_text(text)
    return cands, runs


def test_nested_figure_is_the_hand_computation(tmp_path):
    """m1 right on A, B; m2 right on B, C. "pair" (m2 weighted 3) follows m2 where they
    disagree: right on B, C; "one" right on A, B.
    A: on B, C one scores 0.5, pair 1.0 -> pair, wrong on A.
    B: on A, C one 0.5, pair 0.5 -> a tie, the first written: one, right on B.
    C: on A, B one 1.0, pair 0.5 -> one, wrong on C.
    Nested: 2 of 6 files right, one of each class: UAR 1/3. On all speakers both score 4/6:
    the tie goes to one, the winner."""
    cands, runs = _setup(tmp_path)
    out = select(cands, runs, tmp_path / "out")
    p = out
    assert p["nested"]["uar"] == pytest.approx(1 / 3)
    assert p["nested"]["accuracy"] == pytest.approx(1 / 3)
    assert p["nested"]["confusion"] == [[1, 2], [2, 1]]
    chosen = {s["speaker"]: s["candidate"] for s in p["per_speaker"]}
    assert chosen == {"A": "pair", "B": "one", "C": "one"}
    assert [s["uar_on_others"] for s in p["per_speaker"]] == [1.0, 0.5, 1.0]
    assert [(c["candidate"], c["view"], c["uar"]) for c in p["choices"]] == [
        ("one", "plain", pytest.approx(2 / 3)),
        ("pair", "plain", pytest.approx(2 / 3)),
    ]
    assert p["choices"][0]["chosen_by"] == ["B", "C"]
    assert p["winner"]["candidate"] == "one" and p["winner"]["view"] == "plain"
    # speaker-adaptive predictions (here the same numbers): their own protocol, beside
    assert out["adapted"]["nested"]["uar"] == pytest.approx(1 / 3)
    assert out["files"] == 6 and out["speakers"] == ["A", "B", "C"]
    folder = tmp_path / "out"
    assert json.loads((folder / "nested_summary.json").read_text())["nested"] == p["nested"]
    info = json.loads((folder / "run_info.json").read_text())
    assert {"command", "git_commit", "git_dirty", "processor"} <= set(info)
    md = (folder / "nested_summary.md").read_text()
    assert "| pooled over all files | 0.3333 | 0.3333 | 0.3333 | 6 |" in md
    assert "Winner over all speakers" in md and "one, plain" in md
    # a committee's model card leads with these figures (ser-jax package --nested)
    card = "\n".join(card_lines(folder))
    assert "that speaker is scored with it: UAR 0.333, accuracy 0.333" in card
    assert "speaker-adapted: UAR 0.333" in card
    assert "(what ships): `one`, plain (its pooled UAR 0.667 is optimistic" in card


def test_adapted_protocol_only_where_every_member_has_it(tmp_path):
    cands, runs = _setup(tmp_path, m2={"kinds": ("test",)})
    out = select(cands, runs, tmp_path / "out")
    assert "adapted" not in out and "test_speaker_bn" in out["adapted_missing"]
    md = (tmp_path / "out" / "nested_summary.md").read_text()
    assert "No figures: not every member run has speaker-adaptive predictions" in md


def test_a_speakers_own_predictions_never_change_its_choice(tmp_path):
    """Poisoning B's files: m1 now wrong on B, so "pair" is perfect on B and "one" wrong. On
    all speakers (B's files included) pair now wins; B's own choice, made on A and C only
    (one and pair tie there, 0.5 each), stays the clean run's, one, and B is scored wrong
    with it."""
    cands, runs = _setup(tmp_path / "clean")
    clean = select(cands, runs, tmp_path / "clean" / "out")
    right = {"m1": {"A"}, "m2": {"B", "C"}}
    cands, runs = _setup(tmp_path / "poisoned", right=right)
    p = select(cands, runs, tmp_path / "poisoned" / "out")
    assert p["winner"]["candidate"] == "pair"  # B's labels would choose pair
    b = next(s for s in p["per_speaker"] if s["speaker"] == "B")
    assert (b["candidate"], b["uar_on_others"], b["uar"]) == ("one", 0.5, 0.0)
    assert next(s for s in clean["per_speaker"] if s["speaker"] == "B")["candidate"] == "one"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            CANDIDATES.replace('"m2": 3}', '"m3": 3}'),
            r"cands.py: candidate 'pair' names member 'm3', not in MEMBERS \(m1, m2\)",
        ),
        (
            CANDIDATES.replace('"recipe two"}', '"recipe two", "m3": "x"}').replace(
                '"m2": 3}', '"m3": 3}'
            ),
            r"runs/m3: no finished cv run of member 'm3' \(no cv_summary.json\)",
        ),
        (CANDIDATES.replace('VIEWS = ("plain",)', 'VIEWS = ("plain", "warped")'), "VIEWS"),
        (CANDIDATES.replace("CANDIDATES = ", "NOPE = "), "CANDIDATES is missing"),
        ("MEMBERS = {", r"cands.py: cannot be read as Python \(SyntaxError"),
        (
            CANDIDATES.replace('VIEWS = ("plain",)', 'VIEWS = ("plain", "tta")'),
            "test_tta_predictions.jsonl: missing, and .*cands.py lists its view",
        ),
    ],
)
def test_a_bad_candidates_file_is_one_line_naming_it(tmp_path, text, match):
    cands, runs = _setup(tmp_path, text=text)
    with pytest.raises(ConfigError, match=match) as err:
        select(cands, runs, tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_the_select_verb_writes_the_summary_and_refuses_in_one_line(tmp_path):
    cands, runs = _setup(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "ser_jax", "select", f"--candidates={cands}"]
    ok = subprocess.run(
        [*cmd, f"--runs={runs}", f"--out={tmp_path / 'out'}"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "| pooled over all files | 0.3333 |" in ok.stdout
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["command"].startswith("ser-jax select --candidates=")
    bad = subprocess.run(
        [*cmd, f"--out={tmp_path / 'bad'}"], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2
    assert bad.stderr == "error: select needs --runs (the folder of the members' cv directories)\n"


def test_seeds_choose_apart_and_report_mean_and_std(tmp_path):
    """``--runs A,B`` (one folder a seed): each seed makes its own nested choice; the figures
    are their mean ± std (seed 0: UAR 1/3 as above; seed 1, where m1 is also right on C:
    "one" wins everywhere, UAR 1), the winner is the best mean pooled UAR; the card and the
    table print mean ± std; a member without test-time views gives its plain predictions to
    the tta view."""
    cands, runs0 = _setup(tmp_path / "s0")
    _, runs1 = _setup(tmp_path / "s1", right={"m1": {"A", "B", "C"}, "m2": {"B", "C"}})
    out = select(cands, f"{runs0},{runs1}", tmp_path / "out")
    assert out["nested"]["uar"]["mean"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["nested"]["uar"]["n"] == 2 and out["nested"]["count"] == 12
    assert out["winner"]["candidate"] == "one"
    assert out["winner"]["uar"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert len(out["per_speaker"]) == 6 and {s["seed"] for s in out["per_speaker"]} == {0}
    assert out["adapted"]["nested"]["uar"]["mean"] == pytest.approx(2 / 3)
    card = "\n".join(card_lines(tmp_path / "out"))
    assert "that speaker is scored with it: UAR 0.667 ± 0.471" in card
    md = (tmp_path / "out" / "nested_summary.md").read_text()
    assert "| pooled over all files | 0.6667 ± 0.4714 |" in md
    # a member without test-time views (a feature model): its plain predictions for tta
    text = CANDIDATES.replace('VIEWS = ("plain",)', 'VIEWS = ("plain", "tta")')
    cands, runs = _setup(tmp_path / "views", text=text, m2={"kinds": ("test", "test_tta")})
    for run in (runs / "m2").glob("fold*/seed0"):
        (run / "config.json").write_text(json.dumps({"eval": {"tta_semitones": [-6, 6]}}))
    (runs / "m1" / "fold0-A" / "seed0" / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match="test_tta_predictions.jsonl: missing"):
        select(cands, runs, tmp_path / "views" / "out")
    for run in (runs / "m1").glob("fold*/seed0"):
        (run / "results.json").write_text(json.dumps({"test_time_views": False}))
    viewed = select(cands, runs, tmp_path / "views" / "out")
    assert {(c["candidate"], c["view"]) for c in viewed["choices"]} >= {("one", "tta")}
    one_tta = next(c for c in viewed["choices"] if c["candidate"] == "one" and c["view"] == "tta")
    assert one_tta["uar"] == pytest.approx(2 / 3)  # m1's plain predictions
    assert viewed["tta_semitones"] == [-6.0, 6.0]  # the warps of the members that have them
