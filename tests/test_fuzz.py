"""The fuzz net (bench/fuzz.py): a thousand mutated checkpoints, resumes, IDX files and images, each read as a
user's file is. Every case must end in a result or one UserError line, and the run within the memory bound."""
import re

from conftest import run_script


def test_a_thousand_mutated_files_end_in_a_result_or_one_line(mnist):
    result = run_script("bench/fuzz.py", "--cases", "1000", "--seed", "0")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = re.search(r"1000 cases \(seed 0\) in \d+ s; peak memory (\d+) MB \(bound 2048 MB\); 0 failure\(s\)",
                        result.stdout)
    assert summary and int(summary[1]) < 2048, result.stdout
    for kind in ("checkpoint bytes", "checkpoint values", "resume", "idx", "image"):  # each kind was refused
        assert re.search(rf"^  {kind}: \d+ one line, \d+ read$", result.stdout, re.MULTILINE), kind  # and read
