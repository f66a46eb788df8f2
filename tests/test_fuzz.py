"""The fuzz net (bench/fuzz.py): a thousand mutated checkpoints, resumes and images, of every kind a
path can be and under names the system refuses or a terminal cannot show, each read as a user's file is. Every
case must end in a result or one UserError line within its time limit, and the run within the memory bound."""
import re

import pytest

from conftest import run_script


@pytest.mark.slow
def test_a_thousand_mutated_files_end_in_a_result_or_one_line(mnist):
    result = run_script("bench/fuzz.py", "--cases", "1000", "--seed", "0")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    summary = re.search(r"1000 cases \(seed 0\) in \d+ s; peak memory (\d+) MB \(bound 2048 MB\); 0 failure\(s\)",
                        result.stdout)
    assert summary and int(summary[1]) < 2048, result.stdout
    refused_and_read = ["checkpoint bytes", "checkpoint values", "resume", "image",  # the readers,
                        "regular file", "folder", "plain name", "name not UTF-8", "name with control characters"]
    refused_only = ["FIFO", "symlink to /dev/zero", "dangling symlink", "name over 255 bytes", "path over 4,096 bytes"]
    for drawn in refused_and_read:  # and what the file was and was called: each was refused and read
        assert re.search(rf"^  {drawn}: \d+ one line, \d+ read$", result.stdout, re.MULTILINE), drawn
    for drawn in refused_only:  # nothing can be read from these: each was one line
        assert re.search(rf"^  {drawn}: \d+ one line$", result.stdout, re.MULTILINE), drawn
