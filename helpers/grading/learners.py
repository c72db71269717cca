"""Whose submission is it: learners from folders and LMS download names, and the roster.

Nothing here reads a notebook; it looks at paths and at the instructor's roster only.

Download names it knows (``INSTRUCTORS.md`` lists them for instructors); a download name
anywhere in the path wins over a folder around the whole download:

- a folder per learner under the folder given (nbgrader's ``submitted/<learner>/...``): the
  folder's name; a Moodle folder name is parsed as below;
- Canvas ("Download submissions", one flat folder):
  ``<login>_[LATE_]<user id>_<submission id>_<original name>``; a resubmission's original name
  ends ``-1``, ``-2`` (``03_dropout-1.ipynb``);
- Moodle ("Download all submissions"), a folder per learner or flat:
  ``<Full Name>_<number>_assignsubmission_file_[<original name>]``;
- Blackboard ("Assignment File Download"):
  ``<Assignment Name>_<username>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<original name>]``;
- anything else: the file's stem.

With a roster (:func:`read_roster`), :func:`match` ties each file to a roster learner by
student id, login (or e-mail) or name, compared without case, spaces or punctuation; first the
fields a download name gives, then any id, login or name found as whole words in the path
(``alice_1234_03_dropout.ipynb`` is alice's or 1234's). A file it cannot tie to exactly one
learner stays unmatched (its own row in ``grades.csv``, a line on stderr).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from helpers import course

# --------------------------------------------------------------------------- download names

_CANVAS = re.compile(r"^(?P<login>[^_/]+?)_(?:(?P<late>LATE)_)?(?P<uid>\d+)_(?P<sid>\d{3,})_"
                     r"(?P<orig>.+)$")
_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_[a-z]+_(?P<orig>.*)$")
_BLACKBOARD = re.compile(r"^(?P<assignment>.*)_(?P<user>[^_]+)_attempt_"
                         r"(?P<date>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<orig>.+))?$")


@dataclass(frozen=True)
class Who:
    """What a submission's place says about its learner."""

    name: str                     # the learner, as far as the path tells (no roster)
    source: str                   # folder | canvas | moodle | blackboard | file name
    login: str = ""               # Canvas login, Blackboard username
    ids: tuple = ()               # numbers the LMS wrote (Canvas user id, Moodle's number)
    person: str = ""              # a person's full name (Moodle)
    late: bool = False            # Canvas marked the submission LATE
    original: str = ""            # the file name the learner uploaded, where the LMS kept it
    text: str = ""                # the path below the folder given: searched for roster keys


def parse_download(name: str) -> dict | None:
    """The fields of an LMS download name (a file or a folder name), or None.

    ``{"platform": "canvas"|"moodle"|"blackboard", "login"|"person": ..., "ids": (...),
    "late": bool, "original": ...}``."""
    m = _MOODLE.match(name)
    if m:
        return {"platform": "moodle", "person": m["name"].strip(), "login": "",
                "ids": (m["id"],), "late": False, "original": m["orig"]}
    m = _BLACKBOARD.match(name)
    if m:
        return {"platform": "blackboard", "person": "", "login": m["user"], "ids": (),
                "late": False, "original": m["orig"] or ""}
    m = _CANVAS.match(name)
    if m:
        return {"platform": "canvas", "person": "", "login": m["login"], "ids": (m["uid"],),
                "late": bool(m["late"]), "original": m["orig"]}
    return None


def who_of(given: str, path: Path) -> Who:
    """The learner of ``path``, found under ``given`` (a folder, or the file itself)."""
    p = Path(given)
    parts: tuple = ()
    if p.is_dir():
        try:
            parts = Path(path).relative_to(p).parts
        except ValueError:
            parts = ()
    text = "/".join(parts) if parts else Path(path).name
    fname = Path(path).name
    # an LMS download name (the file's, or a Moodle folder's) is more specific than a folder
    # around the whole download (a zip extracted into a folder of its own): it wins
    d = parse_download(fname)
    if d:
        label = d["person"] or d["login"]
        return Who(label, d["platform"], login=d["login"], ids=d["ids"], person=d["person"],
                   late=d["late"], original=d["original"], text=text)
    for folder in reversed(parts[:-1]):
        d = parse_download(folder)
        if d and d["platform"] == "moodle":
            return Who(d["person"], "moodle", ids=d["ids"], person=d["person"], text=text,
                       original=fname)
    if len(parts) > 1:
        return Who(parts[0], "folder", text=text)
    return Who(Path(path).stem, "file name", text=text)


def learner_of(given: str, path: Path) -> str:
    """Who a submission belongs to, without a roster (see :func:`who_of`)."""
    return who_of(given, path).name


# --------------------------------------------------------------------------- the roster

def _compact(s: str) -> str:
    """Case-, space- and punctuation-insensitive form of a name, login or id."""
    return re.sub(r"[\W_]+", "", str(s).casefold())


def _tokens(s: str) -> list[str]:
    return [t for t in re.split(r"[\W_]+", str(s).casefold()) if t]


@dataclass
class Entry:
    """One learner of the roster."""

    learner: str
    student_id: str = ""
    login: str = ""
    email: str = ""
    label: str = ""               # the name grades.csv shows (learner, unique in the roster)

    def keys(self) -> dict[str, list[list[str]]]:
        """Token lists per kind: ``id``, ``login``, ``name`` (strongest first)."""
        ids = [_tokens(self.student_id)] if self.student_id else []
        logins = []
        if self.login:
            logins.append(_tokens(self.login))
        if self.email:
            logins.append(_tokens(self.email))
            logins.append(_tokens(self.email.split("@")[0]))
        names = []
        words = _tokens(self.learner)
        if words:
            names.append(words)
            if len(words) > 1:  # Canvas writes "Smith, Jane" as smithjane
                names.append([words[-1]] + words[:-1])
        return {"id": [k for k in ids if k], "login": [k for k in logins if k],
                "name": [k for k in names if k]}


class Roster(dict):
    """``{label: student id}`` (what ``grades.csv`` needs), with the full entries in
    ``.entries`` (logins and e-mails for :func:`match`)."""

    def __init__(self, entries: list[Entry]):
        counts: dict = {}
        for e in entries:
            counts[_compact(e.learner)] = counts.get(_compact(e.learner), 0) + 1
        for e in entries:
            twice = counts[_compact(e.learner)] > 1 and e.student_id
            e.label = f"{e.learner} [{e.student_id}]" if twice else e.learner
        super().__init__()
        self.entries: list[Entry] = []
        for e in entries:
            if e.label not in self:
                self[e.label] = e.student_id
                self.entries.append(e)


_NAME_COLS = ("learner", "name", "full name", "student", "student name", "user")
_ID_COLS = ("student_id", "student id", "id", "sis_id", "sis id", "sis user id", "number")
_LOGIN_COLS = ("login", "login_id", "login id", "username", "user name", "sis login id")
_EMAIL_COLS = ("email", "e-mail", "email address")


def read_roster(path: Path) -> Roster:
    """The roster from a CSV file: columns ``learner`` and ``student_id`` (also spelt ``name``,
    ``student``, ``id``, ``sis_id``...), optional ``login`` (or ``username``, ``sis login id``)
    and ``email``; a file with no known header: the first two columns are learner and id.
    Commas, semicolons or tabs; a Canvas gradebook export works as it is. Raises ValueError
    with a reason."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(8192)
        f.seek(0)
        try:  # a spreadsheet saved with ; or tabs (Excel in many locales) reads the same
            dialect = csv.Sniffer().sniff(sample.splitlines()[0] if sample else "", delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [r for r in csv.reader(f, dialect) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: the roster is empty")
    head = [c.strip().lower() for c in rows[0]]

    def col(names):
        return next((head.index(n) for n in names if n in head), None)

    ni, ii, li, ei = col(_NAME_COLS), col(_ID_COLS), col(_LOGIN_COLS), col(_EMAIL_COLS)
    if ni is None and li is not None:
        ni = li                      # only logins: they name the learners
    if ii is None and ei is not None and ei != ni:
        ii = ei                      # no id column: the e-mail identifies
    if ni is None or ii is None:
        if len(head) < 2:
            raise ValueError(f"{path}: the roster needs two columns (learner, student_id)")
        known = _NAME_COLS + _ID_COLS + _LOGIN_COLS + _EMAIL_COLS
        if any(h in known for h in head):
            rows = rows[1:]
        ni, ii, li, ei = 0, 1, None, None
    else:
        rows = rows[1:]

    def get(r, i):
        return r[i].strip() if i is not None and len(r) > i else ""

    # a Canvas gradebook export has a "Points Possible" row under its header: not a learner
    entries = [Entry(get(r, ni), get(r, ii), get(r, li), get(r, ei)) for r in rows
               if get(r, ni) and not get(r, ni).lower().startswith("points possible")]
    if not entries:
        raise ValueError(f"{path}: the roster lists no learner")
    return Roster(entries)


# --------------------------------------------------------------------------- matching

_KINDS = ("id", "login", "name")


def _contains(tokens: list[str], key: list[str]) -> bool:
    n = len(key)
    return any(tokens[i:i + n] == key for i in range(len(tokens) - n + 1))


def _without_lessons(text: str) -> str:
    """The path with the lessons' own names (``03_dropout``) and copy marks taken out, so
    that ``03`` or ``dropout`` is never taken for a learner's id or name."""
    for name, _ in course.LESSONS.values():
        text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
    return re.sub(r"(?i)\bcopy of\b|\.ipynb\b", " ", text)


@dataclass
class Match:
    entry: Entry | None
    how: str                      # "id 1234 in the file name", ... or why nothing matched
    candidates: list = field(default_factory=list)


def match(roster: Roster, who: Who) -> Match:
    """The roster learner of a submission: the fields a download name gives first (id, login,
    name), then ids, logins and names found as whole words in its path. Exactly one learner
    at the strongest kind that finds any, else unmatched."""
    entries = roster.entries
    # 1. the fields the folder or download name gives
    fields = {"id": [_compact(i) for i in who.ids if i],
              "login": [_compact(who.login)] if who.login else [],
              "name": [_compact(x) for x in {who.person, who.name if who.source == "folder" else "",
                                             who.login} if x]}
    for kind in _KINDS:
        wanted = set(fields[kind]) - {""}
        if not wanted:
            continue
        hits = [e for e in entries
                if any("".join(k) in wanted for k in e.keys()[kind])
                or (kind == "name" and any("".join(k) in wanted for k in e.keys()["login"]))]
        hits = list({id(e): e for e in hits}.values())
        if len(hits) == 1:
            return Match(hits[0], f"{kind} from the {who.source} name")
        if len(hits) > 1:
            return Match(None, f"its {kind} fits several roster learners",
                         [e.label for e in hits])
    # 2. ids, logins and names as whole words anywhere in the path below the folder given
    tokens = _tokens(_without_lessons(who.text))
    for kind in _KINDS:
        hits = []
        for e in entries:
            for key in e.keys()[kind]:
                if kind == "id" and len("".join(key)) < 3:
                    continue  # "1" or "12" is too easily part of a copy's "(1)"
                if _contains(tokens, key):
                    hits.append(e)
                    break
        if len(hits) == 1:
            return Match(hits[0], f"{kind} in the path")
        if len(hits) > 1:
            return Match(None, f"the path names several roster learners ({kind})",
                         [e.label for e in hits])
    return Match(None, "no roster learner's id, login or name is in its path")
