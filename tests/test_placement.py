"""Where the network runs: the two-stage plan, its resolution on described machines, and the promise that
splitting the network between stages changes nothing but where it runs."""
import argparse
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from torch import nn

import train
from model import HybridCNN, Machine, Placement, place, resolve_placement
from model.network import ConvBlock, conv_blocks
from model.placement import describe, may_overlap
from utils.errors import UserError

from conftest import REPO

CPU_ONLY, ONE_GPU, APPLE = Machine(), Machine(cuda_devices=1), Machine(mps=True)


def digits(mnist, n):
    return mnist.train_images[:n].float() / 255, mnist.train_labels[:n]


@pytest.mark.parametrize("machine, mode, device, expected", [
    (CPU_ONLY, "auto", None, Placement("cpu", "cpu")),
    (ONE_GPU, "auto", None, Placement("cuda:0", "cpu")),
    (APPLE, "auto", None, Placement("mps", "cpu")),
    (Machine(cuda_devices=1, mps=True), "auto", None, Placement("cuda:0", "cpu")),  # CUDA first
    (ONE_GPU, "auto", "cpu", Placement("cpu", "cpu")),  # an explicit device wins
    (ONE_GPU, "single", None, Placement("cuda:0", "cuda:0")),
    (CPU_ONLY, "single", None, Placement("cpu", "cpu")),
    (ONE_GPU, "single", "cpu", Placement("cpu", "cpu")),
    (ONE_GPU, "hybrid", "cuda", Placement("cuda:0", "cpu")),
    (APPLE, "hybrid", None, Placement("mps", "cpu")),
    (Machine(cuda_devices=2), "hybrid", "cuda:1", Placement("cuda:1", "cpu")),
])
def test_plan_resolution(machine, mode, device, expected):
    assert resolve_placement(mode, device, machine) == expected


@pytest.mark.parametrize("machine, mode, device, message", [
    (CPU_ONLY, "hybrid", None, "needs an accelerator"),
    (CPU_ONLY, "auto", "cuda", "no CUDA device"),
    (ONE_GPU, "single", "cuda:1", "has 1 CUDA device"),
    (CPU_ONLY, "single", "mps", "MPS backend is not available"),
    (CPU_ONLY, "single", "tpu", "device"),
    (CPU_ONLY, "sideways", None, "placement must be one of"),
])
def test_bad_plans_are_clear_errors(machine, mode, device, message):
    with pytest.raises(UserError, match=message):
        resolve_placement(mode, device, machine)


def test_plan_is_plain_data_and_split_is_one_argument():
    plan = resolve_placement("auto", machine=ONE_GPU)
    assert plan.early == "cuda:0" and plan.late == "cpu" and plan.split == 2
    assert plan.short_name == "hybrid-cuda" and plan.accelerator == "cuda:0"
    assert Placement("mps", "mps").accelerator == "mps" and Placement().accelerator is None
    assert Placement(**asdict(plan)) == plan and all(isinstance(value, (str, int)) for value in asdict(plan).values())
    assert resolve_placement("auto", machine=ONE_GPU, split=3).split == 3
    with pytest.raises(UserError, match="split 4: this HybridCNN has 4 layer"):
        place(HybridCNN(), Placement("meta", "cpu", split=4))
    assert describe(place(HybridCNN(channels=(8, 8, 8, 8)), Placement("meta", "cpu", split=4))) == \
        "0-3 (ConvBlock) -> meta | 4 (Classifier) -> cpu"


class OwnNetwork(nn.Module):
    """A network with its own forward: not a sequence of layers."""

    def __init__(self):
        super().__init__()
        self.conv, self.linear = nn.Conv2d(1, 4, 5, stride=4), nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.linear(self.conv(x).relu().flatten(1))


def test_a_model_that_is_not_a_sequence_runs_on_one_device():
    own = OwnNetwork()
    assert resolve_placement("auto", machine=ONE_GPU, model=own) == Placement("cuda:0", "cuda:0")
    assert resolve_placement("auto", machine=ONE_GPU, model=HybridCNN()) == Placement("cuda:0", "cpu")
    with pytest.raises(UserError, match="hybrid placement splits an nn.Sequential between devices, and this model "
                                        "is a OwnNetwork: use --placement single or auto"):
        resolve_placement("hybrid", machine=ONE_GPU, model=own)
    assert describe(place(own, resolve_placement(model=own))) == "OwnNetwork -> cpu"
    assert own(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_only_host_to_cuda_copies_may_overlap():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda:0"), torch.device("mps")
    assert may_overlap(cpu, cuda)
    for source, target in [(cuda, cpu), (mps, cpu), (cpu, mps), (cpu, cpu), (cuda, cuda)]:
        assert not may_overlap(source, target), (source, target)


def settings_after_placing_on(device):
    """make_reproducible changes process-wide settings: look at them in a fresh interpreter that places a
    model on `device` (early stage), with no CUBLAS_WORKSPACE_CONFIG of the caller's."""
    probe = ("import os, torch; from model import HybridCNN, Placement, place; place(HybridCNN(), Placement(%r, 'cpu')); "
             "b = torch.backends; print(torch.are_deterministic_algorithms_enabled(), b.cudnn.benchmark, "
             "b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32, os.environ.get('CUBLAS_WORKSPACE_CONFIG'))" % device)
    env = {key: value for key, value in os.environ.items() if key != "CUBLAS_WORKSPACE_CONFIG"}
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_cpu_runs_keep_torch_defaults():
    deterministic, benchmark, _, _, workspace = settings_after_placing_on("cpu")
    assert (deterministic, benchmark, workspace) == ("False", "False", "None")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_placing_a_model_on_cuda_makes_it_reproducible():
    assert settings_after_placing_on("cuda:0") == ["True", "False", "False", "False", ":4096:8"]


def test_every_copy_between_devices_follows_that_rule():
    """non_blocking is set in one place only, model.placement.moving_to, which asks may_overlap."""
    code = [path for path in REPO.rglob("*.py") if not {"tests", "node_modules", ".venv"} & set(path.parts)]
    using = [str(path.relative_to(REPO)) for path in code if "non_blocking" in path.read_text()]
    assert using == ["model/placement.py"]


EVERY_SPLIT = [(channels, split) for channels in ((8, 16), (10, 20, 28), (8, 16, 24, 24), (6, 8, 8, 8, 8))
               for split in range(1, len(channels) + 1)]


@pytest.mark.parametrize("channels, split", EVERY_SPLIT)
def test_the_first_split_layers_run_early_and_the_rest_late(channels, split):
    """Which layer runs where, told apart on a machine without an accelerator: an early stage on PyTorch's
    "meta" device (shapes, no data) holds exactly the first `split` children's weights, and the log names them."""
    model = place(HybridCNN(channels), Placement("meta", "cpu", split))
    devices = {int(name.split(".")[0]): parameter.device.type for name, parameter in model.named_parameters()}
    assert devices == {index: "meta" if index < split else "cpu" for index in range(len(channels) + 1)}
    early = f"0-{split - 1}" if split > 1 else "0"
    late = f"{split}-{len(channels)}" if split < len(channels) else f"{split}"
    classes = "ConvBlock, Classifier" if split < len(channels) else "Classifier"
    assert describe(model) == f"{early} (ConvBlock) -> meta | {late} ({classes}) -> cpu"


@pytest.mark.parametrize("channels, split", EVERY_SPLIT)
def test_the_layers_run_in_order_whatever_the_split_and_a_block_of_any_width_and_size_added_runs(channels, split):
    blocks = conv_blocks(channels) + [ConvBlock(channels[-1], 7, padding=1, pool=True)]  # a new width, 6x6 -> 3x3
    model = place(HybridCNN(blocks=blocks), Placement("cpu", "cpu", split)).eval()
    ran = []
    for index, module in enumerate(model):
        module.register_forward_hook(lambda module, inputs, output, index=index: ran.append((index, output.shape)))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [index for index, _ in ran] == list(range(len(channels) + 2))
    assert ran[-2][1] == (2, 7, 3, 3)  # the added block ran, on the last block's output
    assert model[-1][-1].in_features == 7 * 3 * 3  # and the classifier reads what it makes


@pytest.mark.parametrize("split", [1, 2, 3])
def test_the_input_hops_to_the_late_device_at_the_split(split):
    """Seen on a machine without an accelerator: a late stage on PyTorch's "meta" device computes no values, but
    it only runs if its input arrives there, and the output comes from there."""
    model = place(HybridCNN(), Placement("cpu", "meta", split)).eval()
    arrived = []
    model[split].register_forward_pre_hook(lambda module, inputs: arrived.append(inputs[0].device.type))
    assert model(torch.zeros(2, 1, 28, 28)).device.type == "meta" and arrived == ["meta"]


@pytest.mark.parametrize("split", [1, 2, 3])
def test_two_stage_split_equals_single_device_exactly(mnist, split):
    torch.manual_seed(0)
    single = HybridCNN()
    staged = place(HybridCNN(), Placement("cpu", "cpu", split))
    staged.load_state_dict(single.state_dict())
    images, labels = digits(mnist, 32)
    results = []
    for model in (single, staged):
        torch.manual_seed(1)  # same dropout mask
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        results.append((loss, [parameter.grad for parameter in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def compare_hybrid_with_cpu(accelerator, mnist):
    torch.manual_seed(0)
    reference = HybridCNN().eval()
    hybrid = place(HybridCNN(), resolve_placement("hybrid", accelerator)).eval()
    hybrid.load_state_dict(reference.state_dict())
    images, labels = digits(mnist, 64)
    outputs = [model(images) for model in (reference, hybrid)]
    assert outputs[1].device.type == "cpu"
    for output in outputs:
        F.cross_entropy(output, labels).backward()
    assert torch.allclose(outputs[0], outputs[1], atol=1e-4)
    for cpu_parameter, hybrid_parameter in zip(reference.parameters(), hybrid.parameters()):
        assert torch.allclose(cpu_parameter.grad, hybrid_parameter.grad.cpu(), atol=1e-4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_hybrid_on_cuda_matches_cpu(mnist):
    compare_hybrid_with_cpu("cuda", mnist)


@pytest.mark.mps
@pytest.mark.skipif(not Machine.detect().mps, reason="Apple's MPS backend is not available on this machine")
def test_hybrid_on_mps_matches_cpu(mnist):
    compare_hybrid_with_cpu("mps", mnist)


def test_the_training_benchmark_runs_only_placements_train_py_takes():
    """bench/bench_train.py's runs on a machine with a GPU (described): train.py takes every one's flags and
    placement. Before, its single-device runs passed --split, which train.py came to refuse."""
    import bench.bench_train as bench_train
    parser = argparse.ArgumentParser()
    train.add_training_flags(parser)
    gpu = Machine(cuda_devices=1)
    for mode, device, split in bench_train.placements(gpu):
        args = parser.parse_args(bench_train.train_command(mode, device, split, 1, "models")[2:])
        assert resolve_placement(args.placement, args.device, gpu, args.split, HybridCNN()).hybrid == (mode == "hybrid")
