"""Show the network build_model makes, its parameter count and where it runs on this machine; optionally check a
budget.

    python -m model                    # print the layers and the parameter count
    python -m model --budget 25000     # exit 1 unless the count is under 25,000 (used by CI)
    python -m model --channels 8,16,32 --budget 25000   # the same for other widths
"""
import sys

from model import build_model, count_parameters, place, resolve_placement
from model.network import CHANNELS, channel_list
from model.placement import describe
from utils import flags
from utils.errors import OneLineErrors, run_cli


def main(argv=None):
    parser = OneLineErrors(prog="python -m model", description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=channel_list, default=CHANNELS,
                        help=f"the conv blocks' widths (default: {','.join(map(str, CHANNELS))})")
    parser.add_argument("--budget", type=flags.positive_int, help="fail unless the parameter count is below this")
    args = parser.parse_args(argv)
    model = build_model(args.channels)
    print(model)
    print(f"placement: {describe(place(model, resolve_placement(model=model)))}")
    parameters = count_parameters(model)
    if args.budget is None:
        print(f"parameters: {parameters:,}")
        return 0
    within = parameters < args.budget
    print(f"parameters: {parameters:,} (budget: under {args.budget:,}): {'ok' if within else 'OVER BUDGET'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
