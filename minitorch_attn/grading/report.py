"""The score report: per-test outcomes, per-exercise points, the table and grades.json (no pytest needed)."""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import tempfile


def exercise_key(exercise_id: str):
    """Sort "2.10" after "2.9"."""
    return tuple(int(p) if p.isdigit() else p for p in exercise_id.split("."))


@dataclasses.dataclass
class GradedOutcome:
    name: str
    exercise: str
    points: int
    passed: bool
    message: str = ""
    exception: str = ""
    error: bool = False  # not graded: the student's process crashed, was killed, exited or could not import


@dataclasses.dataclass
class Report:
    tests: list[GradedOutcome]
    tasks: dict[str, str]
    problems: list[str] = dataclasses.field(default_factory=list)

    def exercises(self) -> list[dict]:
        ids = sorted({t.exercise for t in self.tests} | set(self.tasks), key=exercise_key)
        rows = []
        for exercise_id in ids:
            tests = [t for t in self.tests if t.exercise == exercise_id]
            failed = [t for t in tests if not t.passed]
            rows.append({
                "id": exercise_id,
                "task": self.tasks.get(exercise_id, ""),
                "earned": sum(t.points for t in tests if t.passed),
                "possible": sum(t.points for t in tests),
                "status": ("error" if any(t.error for t in tests) else "failed" if failed or not tests
                           else "passed"),
                "message": (f"{failed[0].name}: {failed[0].message}" if failed
                            else "" if tests else "no graded tests"),
                "tests": [dataclasses.asdict(t) for t in tests],
            })
        return rows

    @property
    def earned(self) -> int:
        return sum(t.points for t in self.tests if t.passed)

    @property
    def possible(self) -> int:
        return sum(t.points for t in self.tests)

    @property
    def complete(self) -> bool:
        """Every selected exercise was judged: no crash, kill, exit, import failure or other problem."""
        return not self.problems and not any(t.error for t in self.tests)

    def write_json(self, path) -> dict:
        """Write grades.json atomically (a reader sees the old file or the new one); returns what was written."""
        data = self.to_json()
        path = pathlib.Path(path)
        handle, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        os.chmod(scratch, 0o644)
        os.replace(scratch, path)
        return data

    def to_json(self) -> dict:
        return {"exercises": self.exercises(), "total": {"earned": self.earned, "possible": self.possible},
                "problems": list(self.problems)}

    @classmethod
    def from_json(cls, data) -> "Report":
        tests = [GradedOutcome(**t) for row in data["exercises"] for t in row["tests"]]
        return cls(tests, {row["id"]: row["task"] for row in data["exercises"]}, list(data.get("problems", [])))

    def table(self) -> str:
        rows = self.exercises()
        width = max([len("Exercise")] + [len(r["id"]) for r in rows])
        lines = [f"{'Exercise':<{width}}  {'Points':>7}  Result"]
        for row in rows:
            result = "passed" if row["status"] == "passed" else row["message"]
            lines.append(f"{row['id']:<{width}}  {row['earned']:>3}/{row['possible']:<3}  {result}")
        lines.append(f"{'Total':<{width}}  {self.earned:>3}/{self.possible:<3}")
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)
